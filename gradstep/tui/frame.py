"""What the app shows of one step, gathered from the engine in one go (on the worker thread).

A :class:`Frame` is an immutable snapshot: the tensors of the step with their
phase, status and worst difference, the losses so far, the first divergence,
the run's device and dtype. The UI thread only ever reads frames, so it never
touches the engine while a worker is stepping it.

Step ``-1`` is the start: both sides' initial weights, before any update.

A recorded session (:class:`~gradstep.recorded.RecordedRun`) holds full
tensors for the steps of its window only: another step's frame is its summary
row (each tensor's status, worst difference and out-of-tolerance count, no
elements), with a notice saying which steps were saved in full.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gradstep import keys
from gradstep.compare import Status, Tolerance, compare_tensor, tolerance_for
from gradstep.engine import Engine
from gradstep.recorded import StepNotRecorded
from gradstep.safe_text import printable
from gradstep.sides import ScenarioError
from gradstep.stoppable import error_words

INITIAL = -1


@dataclass(frozen=True)
class TensorEntry:
    """One named tensor of the step, both sides."""

    key: str
    phase: str
    status: Status
    numpy: np.ndarray | None
    torch: np.ndarray | None
    tolerance: Tolerance
    max_abs: float
    n_bad: int
    worst_index: tuple[int, ...] | None
    local: np.ndarray | None = None  # the NumPy side re-run from torch's weights, when measured
    recorded: bool = True  # False: a saved session's summary row, without the elements
    verdict: str = ""  # what decided its status beyond the elementwise marks (the precision referee, normwise)

    @property
    def shape(self) -> tuple[int, ...] | None:
        present = self.numpy if self.numpy is not None else self.torch
        return None if present is None else tuple(np.shape(present))

    @property
    def out_of_tolerance(self) -> bool:
        return self.status in (Status.DIVERGED, Status.NONFINITE, Status.SHAPE, Status.DRIFT, Status.ROUNDING)


@dataclass(frozen=True)
class ErrorInfo:
    """A failure of the scenario's own code: where it happened."""

    step: int | None
    side: str
    function: str
    location: str
    message: str

    @classmethod
    def of(cls, error: ScenarioError) -> ErrorInfo:
        inner = error.error
        return cls(error.step, error.side, error.function, printable(error.location or "?"),
                   printable(error_words(inner), lines=True))


@dataclass(frozen=True)
class Frame:
    step: int  # INITIAL for the initial weights
    epoch: int | None
    batch: int | None
    frontier: int  # steps run so far (engine.next_step)
    total: int
    entries: tuple[TensorEntry, ...]
    losses: np.ndarray  # (frontier, 2): NumPy and torch loss per step, for the plot
    loss_numpy: np.generic | None  # the step's loss in its own dtype
    loss_torch: np.generic | None
    first_divergence: tuple[int, str] | None
    first_nonfinite: int | None
    device: str
    dtype: str
    tf32: bool | None
    scenario: str
    variant: str
    error: ErrorInfo | None = None
    notice: str = ""
    focus_key: str | None = None  # a tensor to select (the divergence a run stopped at)
    patches: tuple[str, ...] = ()  # the targets with a patch in force
    replayed: bool = False  # a patch move replayed the run: the status says how the divergence moved
    divergence_before: tuple[int, str] | None = None  # the first divergence before that replay
    generation: int = 0  # which engine: every patch replay makes a new one
    recorded_from: str = ""  # a saved session's file: the run is read-only

    def entry(self, key: str) -> TensorEntry | None:
        return next((e for e in self.entries if e.key == key), None)

    def with_(self, **changes) -> Frame:
        return replace(self, **changes)


def build_frame(engine: Engine, step: int, phases: PhaseMap) -> Frame:
    """The frame of ``step`` (INITIAL, or a step already run)."""
    if step == INITIAL:
        return _initial_frame(engine)
    try:
        record = engine.record(step)
    except StepNotRecorded as missing:
        return _summary_frame(engine, step, phases).with_(notice=str(missing))
    trace = engine.trace
    column = {k: i for i, k in enumerate(trace.keys)}
    referee = getattr(engine, "referee_reports", {}).get(step)
    entries = []
    for key in phases.ordered(engine, record):
        a, b = record.numpy.get(key), record.torch.get(key)
        col = column.get(key)
        raw = int(trace.status[step, col]) if col is not None else -1
        tol = _tolerance(a, b, engine, key)
        facts = compare_tensor(key, a, b, tolerance=tol, ulp=False)
        status = Status(raw) if raw >= 0 else facts.status
        n_bad = int(trace.n_bad[step, col]) if col is not None else facts.n_bad
        entries.append(TensorEntry(
            key, phases.phase(key), status, a, b, tol,
            float(trace.max_abs[step, col]) if col is not None else facts.max_abs,
            n_bad,
            facts.worst_index,
            None if record.local is None else record.local.get(key),
            verdict=_verdict(referee, key, status, n_bad),
        ))
    return _frame(engine, step, record.epoch, record.index, tuple(entries),
                  _loss(record.numpy), _loss(record.torch))


def _summary_frame(engine: Engine, step: int, phases: PhaseMap) -> Frame:
    """A step of a saved session outside its window: the trace's row for it, no elements."""
    trace = engine.trace
    column = {k: i for i, k in enumerate(trace.keys) if trace.status[step, i] >= 0}
    rank = {p: i for i, p in enumerate(keys.PHASES)}
    ordered = sorted(column, key=lambda k: rank.get(phases.phase_of(engine, k), 0))
    tol = tolerance_for(np.dtype(engine.dtype_name), np.dtype(engine.dtype_name), engine.rtol, engine.atol)
    entries = tuple(
        TensorEntry(k, phases.phase(k), Status(int(trace.status[step, column[k]])), None, None, tol,
                    float(trace.max_abs[step, column[k]]), int(trace.n_bad[step, column[k]]), None, recorded=False)
        for k in ordered)
    epoch, batch = engine.position(step)
    losses = trace.losses[step]
    return _frame(engine, step, epoch, batch, entries, np.float64(losses[0]), _as_run_dtype(losses[1], engine))


def _as_run_dtype(value: float, engine: Engine) -> np.generic:
    """The trace keeps losses as float64: shown in torch's dtype when that holds it exactly (9 digits, not 17)."""
    narrow = np.asarray(value).astype(engine.dtype_name)[()]
    return narrow if float(narrow) == value or np.isnan(value) else np.float64(value)


def _initial_frame(engine: Engine) -> Frame:
    try:
        weights = engine.initial_weights()
    except StepNotRecorded as missing:
        return _frame(engine, INITIAL, None, None, (), None, None).with_(notice=str(missing))
    names = list(dict.fromkeys([*weights["numpy"], *weights["torch"]]))
    entries = []
    for name in names:
        a, b = weights["numpy"].get(name), weights["torch"].get(name)
        tol = _tolerance(a, b, engine, keys.before(name))
        facts = compare_tensor(keys.before(name), a, b, tolerance=tol, ulp=False)
        entries.append(TensorEntry(keys.before(name), "before", facts.status, a, b, tol, facts.max_abs,
                                   facts.n_bad, facts.worst_index))
    return _frame(engine, INITIAL, None, None, tuple(entries), None, None)


def _frame(engine: Engine, step: int, epoch: int | None, batch: int | None, entries: tuple[TensorEntry, ...],
           loss_numpy: np.generic | None, loss_torch: np.generic | None) -> Frame:
    d = engine.first_divergence
    return Frame(
        step=step, epoch=epoch, batch=batch, frontier=engine.next_step, total=engine.total_steps,
        entries=entries, losses=engine.trace.losses.copy(), loss_numpy=loss_numpy, loss_torch=loss_torch,
        first_divergence=None if d is None else (d.step, d.tensor), first_nonfinite=engine.first_nonfinite,
        device=engine.device, dtype=engine.dtype_name, tf32=engine.tf32,
        scenario=engine.scenario.name, variant=engine.scenario.variant,
        recorded_from=str(engine.path) if getattr(engine, "read_only", False) else "",
    )


def _tolerance(a: np.ndarray | None, b: np.ndarray | None, engine: Engine, key: str = "") -> Tolerance:
    if a is None or b is None:
        return tolerance_for(np.float64, np.float64, engine.rtol, engine.atol)
    declared = engine.tolerance_of(key, a, b) if hasattr(engine, "tolerance_of") else None
    return declared or tolerance_for(np.asarray(a).dtype, np.asarray(b).dtype, engine.rtol, engine.atol)


def _verdict(referee, key: str, status: Status, n_bad: int) -> str:
    """The referee's word on the pair at this step; else, for a pair out only on its own scale, that."""
    judgement = referee.judgements.get(key) if referee is not None else None
    if judgement is not None:
        return judgement.short()
    if status in (Status.DIVERGED, Status.DRIFT) and not n_bad:
        return "out of tolerance normwise, on its own scale"
    return ""


def _loss(side: dict[str, np.ndarray]) -> np.generic | None:
    value = side.get("loss")
    if value is None or np.size(value) == 0:
        return None
    return np.asarray(value).reshape(-1)[0]


class PhaseMap:
    """The phase of every key (keys.PHASES) and a step's keys in compute order, from the engine,
    remembered so that a frame built while a worker steps the engine never asks it twice."""

    def __init__(self) -> None:
        self._phase: dict[str, str] = {}

    def ordered(self, engine: Engine, record) -> list[str]:
        names = engine.compute_order(record)
        for k in names:
            self.phase_of(engine, k)
        return names

    def phase_of(self, engine: Engine, key: str) -> str:
        if key not in self._phase:
            self._phase[key] = engine.phase_of(key)
        return self._phase[key]

    def phase(self, key: str) -> str:
        return self._phase.get(key, "forward")
