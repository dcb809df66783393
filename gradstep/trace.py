"""What each step produced, in bounded memory however long the run.

Three tiers:
- per-step summaries for every step (worst absolute and relative difference,
  out-of-tolerance count and status per tensor, each side's loss): 17 bytes per
  tensor per step, which grows with the run's length;
- full tensors of the most recent steps (the window);
- checkpoints of both sides' whole state every ``interval`` steps, from which
  any older step is recomputed. When there are more than ``max_checkpoints``
  every other one is dropped and the interval doubles, so a 14,000-step run
  keeps at most twice as many checkpoints as a 1,400-step one.

The three share one budget, ``budget_bytes``: the window has what the
summaries and checkpoints leave (at least a quarter of it), so as they grow
the window gives way and a long run holds what a short one does. The window's
freed steps are handed back to the system as it turns over (:mod:`gradstep.heap`):
otherwise the allocator's holes would still make a long run's peak the larger.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradstep.compare import Status
from gradstep.heap import give_back_freed_memory

_SUMMARY_BYTES = 17  # per tensor per step: float64 abs, float32 rel, int32 count, int8 status


@dataclass
class StepRecord:
    """The full tensors of one step, both sides, in the NumPy side's names and layout.

    ``local`` holds the NumPy side re-run from the torch side's weights (the
    local error), when it was measured at this step.
    """

    step: int
    epoch: int
    index: int
    numpy: dict[str, np.ndarray]
    torch: dict[str, np.ndarray]
    local: dict[str, np.ndarray] | None = None
    metrics: dict[str, dict[str, float]] | None = None

    def nbytes(self) -> int:
        """Bytes held by the record's arrays (arrays shared between steps count each time)."""
        sides = [self.numpy, self.torch] + ([self.local] if self.local else [])
        return sum(int(v.nbytes) for side in sides for v in side.values())


def keep_within(records: OrderedDict[int, StepRecord], budget: int, at_least: int, at_most: int | None = None) -> None:
    """Let the oldest of ``records`` go until they hold no more than ``budget`` bytes (and ``at_most`` records),
    ``at_least`` always kept: full records of old steps at hand, few where each is the size of a big model."""
    held = sum(r.nbytes() for r in records.values())
    while len(records) > at_least and (held > budget or (at_most is not None and len(records) > at_most)):
        held -= records.popitem(last=False)[1].nbytes()


@dataclass
class EpochMetrics:
    step: int
    epoch: int
    numpy: dict[str, float]
    torch: dict[str, float]


@dataclass
class Checkpoint:
    """Both sides' state at the start of ``step``."""

    step: int
    numpy: Mapping[str, Any]
    torch: Mapping[str, Any]


class _Rows:
    """A 2-d array that grows along its first axis by a quarter (so at most a fifth is spare)."""

    def __init__(self, width: int, dtype: Any, fill: Any = 0):
        self.fill = fill
        self.data = np.full((64, width), fill, dtype=dtype)
        self.count = 0

    def append(self, row: np.ndarray) -> None:
        self.append_at(slice(0, len(row)), row)

    def append_at(self, columns: np.ndarray | slice, values: np.ndarray) -> None:
        """A new row with ``values`` at ``columns`` and the fill value elsewhere."""
        if self.count == len(self.data):
            self.reserve(len(self.data) + max(64, len(self.data) // 4))
        self.data[self.count, columns] = values  # rows are made full of the fill value
        self.count += 1

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` rows in all: a run of known length never copies its summaries to grow."""
        if rows > len(self.data):
            grown = np.full((rows, self.data.shape[1]), self.fill, dtype=self.data.dtype)
            grown[: self.count] = self.data[: self.count]
            self.data = grown

    def widen(self, width: int) -> None:
        if width > self.data.shape[1]:
            wider = np.full((len(self.data), width), self.fill, dtype=self.data.dtype)
            wider[:, : self.data.shape[1]] = self.data
            self.data = wider

    @property
    def rows(self) -> np.ndarray:
        return self.data[: self.count]


@dataclass
class Trace:
    """Per-step summaries, a window of full steps and thinning checkpoints, within one budget."""

    # Summaries, window and checkpoints together (see the module's notes). 32 MiB: with the comparison kernel's
    # ~110 MB (numba, LLVM) a small model's whole extra peak stays under 150 MB; a step out of the window is
    # recomputed from a checkpoint (fizzbuzz: ~13 ms).
    budget_bytes: int = 32 << 20
    checkpoint_bytes: int = 128 << 20
    max_checkpoints: int = 256
    reserve_bytes: int = 16 << 20
    interval: int = 16
    keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._abs = _Rows(0, np.float64)
        # Summaries are the one part that grows with the run: keep them narrow. The
        # greatest absolute difference stays float64 (it is printed at full precision);
        # the relative one is an indication, float32 is plenty.
        self._rel = _Rows(0, np.float32)
        self._bad = _Rows(0, np.int32)
        self._status = _Rows(0, np.int8, fill=-1)  # -1: the key did not exist at that step
        self._loss = _Rows(2, np.float64, fill=np.nan)
        self._window: OrderedDict[int, tuple[StepRecord, int]] = OrderedDict()
        self._window_used = 0
        self._evicted_since_trim = 0
        self.checkpoints: dict[int, Checkpoint] = {}
        self._checkpoint_bytes: dict[int, int] = {}
        self._checkpoints_held = 0
        self.metrics: list[EpochMetrics] = []

    # ---- summaries -------------------------------------------------------
    def key_columns(self, step_keys: list[str]) -> np.ndarray:
        """Column of each key, adding new keys at the end."""
        known = {k: i for i, k in enumerate(self.keys)}
        for k in step_keys:
            if k not in known:
                known[k] = len(self.keys)
                self.keys.append(k)
        for rows in (self._abs, self._rel, self._bad, self._status):
            rows.widen(len(self.keys))
        return np.array([known[k] for k in step_keys], dtype=np.int64)

    def add_summary(
        self, columns: np.ndarray, status: np.ndarray, compared: np.ndarray, max_abs: np.ndarray,
        max_rel: np.ndarray, n_bad: np.ndarray, losses: tuple[float, float],
    ) -> None:
        """One step's row: ``status`` of the keys at ``columns``; the differences of those at ``compared``.

        Keys not compared (one side only, shapes apart) keep 0 differences; keys
        the step does not have keep status -1.
        """
        self._status.append_at(columns, status)
        self._abs.append_at(compared, max_abs)
        self._rel.append_at(compared, max_rel)
        self._bad.append_at(compared, n_bad)
        self._loss.append(losses)

    def reserve(self, steps: int) -> None:
        """Make room for the summaries of ``steps`` steps in all (a run that knows its length).

        At most ``reserve_bytes`` at once: a very long run's rows still grow as they come.
        """
        row_bytes = _SUMMARY_BYTES * max(len(self.keys), 1) + 16  # + the two losses
        steps = min(steps, self.steps + max(64, self.reserve_bytes // row_bytes))
        for rows in (self._abs, self._rel, self._bad, self._status, self._loss):
            rows.reserve(steps)

    @property
    def steps(self) -> int:
        return self._loss.count

    @property
    def max_abs(self) -> np.ndarray:
        return self._abs.rows

    @property
    def max_rel(self) -> np.ndarray:
        return self._rel.rows

    @property
    def n_bad(self) -> np.ndarray:
        return self._bad.rows

    @property
    def status(self) -> np.ndarray:
        return self._status.rows

    @property
    def losses(self) -> np.ndarray:
        """(steps, 2): the NumPy and the torch loss of every step."""
        return self._loss.rows

    def step_status(self, step: int) -> dict[str, Status | None]:
        row = self._status.rows[step]
        return {k: (Status(int(s)) if s >= 0 else None) for k, s in zip(self.keys, row, strict=False)}

    def held_bytes(self) -> dict[str, int]:
        """What each tier holds now, in bytes (reserved summary rows included): together within
        ``budget_bytes``, the window giving way as the summaries and checkpoints grow."""
        return {"summaries": self._summary_bytes(), "window": self._window_used,
                "checkpoints": self._checkpoints_held}

    def _summary_bytes(self) -> int:
        return sum(rows.data.nbytes for rows in (self._abs, self._rel, self._bad, self._status, self._loss))

    # ---- window of full tensors ----------------------------------------
    def keep(self, record: StepRecord, nbytes: int | None = None, alone: bool = False) -> None:
        """Keep ``record`` in the window (``nbytes``: its size, when the caller knows it already).

        ``alone``: let every other step go (a run that knows the window will have
        turned over before it ends: holding them would only make memory cold).
        """
        size = record.nbytes() if nbytes is None else nbytes
        self._window[record.step] = (record, size)
        self._window_used += size
        room = 0 if alone else self._window_room()
        while self._window_used > room and len(self._window) > 1:
            _, (_, old_size) = self._window.popitem(last=False)
            self._window_used -= old_size
            self._evicted_since_trim += old_size
        if self._evicted_since_trim > self.budget_bytes:  # a turnover's worth let go: ~1 ms to hand it back
            self._evicted_since_trim = 0
            give_back_freed_memory()

    def _window_room(self) -> int:
        # The window gives way as the summaries and checkpoints grow, so a long run holds what a
        # short one does; it keeps a quarter of the budget whatever they take (a big model's checkpoints).
        return max(self.budget_bytes // 4, self.budget_bytes - self._summary_bytes() - self._checkpoints_held)

    def window_capacity(self, step_bytes: int) -> int:
        """How many steps of ``step_bytes`` the window has room for now (at least one)."""
        return max(1, self._window_room() // max(step_bytes, 1))

    def recent(self, step: int) -> StepRecord | None:
        kept = self._window.get(step)
        return kept[0] if kept else None

    def window_steps(self) -> list[int]:
        return list(self._window)

    # ---- checkpoints -----------------------------------------------------
    def wants_checkpoint(self, step: int) -> bool:
        return step % self.interval == 0 and step not in self.checkpoints

    def add_checkpoint(self, checkpoint: Checkpoint, nbytes: int) -> None:
        self.checkpoints[checkpoint.step] = checkpoint
        self._checkpoint_bytes[checkpoint.step] = nbytes
        self._checkpoints_held += nbytes
        budget = max(4, min(self.max_checkpoints, self.checkpoint_bytes // max(nbytes, 1)))
        while len(self.checkpoints) > budget:
            self.interval *= 2
            self.checkpoints = {s: c for s, c in self.checkpoints.items() if s % self.interval == 0}
            self._checkpoint_bytes = {s: self._checkpoint_bytes[s] for s in self.checkpoints}
            self._checkpoints_held = sum(self._checkpoint_bytes.values())

    def checkpoint_before(self, step: int) -> Checkpoint:
        """The latest checkpoint at or before ``step`` (step 0's is never dropped)."""
        best = max(s for s in self.checkpoints if s <= step)
        return self.checkpoints[best]
