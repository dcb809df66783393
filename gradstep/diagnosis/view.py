"""What the rules look at: one step's tensors of both sides, compared, in compute order.

A :class:`StepView` is plain data, so a rule can be tested on synthetic
tensors (the TF32 rule is: no GPU here). :func:`view_of` builds one from an
engine after a run, from ``engine.record(step)`` and its local error, without
touching the per-step engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradstep import keys
from gradstep.compare import Status, TensorComparison, compare_tensor
from gradstep.engine import Engine

DIVERGING = (Status.DIVERGED, Status.NONFINITE, Status.SHAPE)
# Compute order for ranking; a loss value alone changes nothing in training, so it ranks last.
PHASE_RANK = {"before": 0, "input": 1, "forward": 2, "grad": 3, "update": 4, "after": 5, "loss": 6}


@dataclass
class StepView:
    """One step, both sides, in the NumPy side's names and layout.

    ``numpy`` is the NumPy side re-run from the torch side's weights (the local
    error) where the engine measured it, else the free-running NumPy side;
    ``free_numpy`` is always the free-running one. ``diverged`` lists the keys
    out of tolerance (locally; directly for inputs and step 0's weights) in
    compute order, rounding-only pairs included (their comparison's status
    says ROUNDING, and they also agree), ``lead`` the one the engine reported
    first.
    """

    step: int
    numpy: Mapping[str, np.ndarray]
    torch: Mapping[str, np.ndarray]
    free_numpy: Mapping[str, np.ndarray] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)
    comparisons: dict[str, TensorComparison] = field(default_factory=dict)
    diverged: list[str] = field(default_factory=list)
    lead: str | None = None
    weights: list[str] = field(default_factory=list)
    torch_only: list[str] = field(default_factory=list)
    device: str = "cpu"
    tf32: bool | None = None
    torch_dtype: str = "float64"
    hyper: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 1
    target_sizes: tuple[int, ...] = ()

    def phase(self, key: str) -> str:
        return self.phases.get(key, "forward")

    def rank(self, key: str) -> int:
        return PHASE_RANK.get(self.phase(key), 2)

    def diverged_in(self, *phases: str) -> list[str]:
        return [k for k in self.diverged if self.phase(k) in phases]

    def agrees(self, key: str) -> bool:
        c = self.comparisons.get(key)
        return c is not None and c.status in (Status.OK, Status.DRIFT, Status.ROUNDING)

    @property
    def tf32_in_force(self) -> bool:
        return self.device.startswith("cuda") and bool(self.tf32) and self.torch_dtype == "float32"

    def relative_noise(self) -> float:
        """The least relative difference two correct computations may show: TF32's ~1e-3 where it is on."""
        return 5e-3 if self.tf32_in_force else 0.0

    def scaled_difference(self, key: str) -> float:
        """Greatest |numpy − torch| of ``key`` relative to the larger side's greatest magnitude (inf if none)."""
        pair = self.pair(key)
        if pair is None:
            return float("inf")
        a, b = (np.asarray(x, dtype=np.float64) for x in pair)
        scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
        with np.errstate(invalid="ignore"):
            diff = float(np.max(np.abs(a - b), initial=0.0))
        return diff / scale if scale > 0 and np.isfinite(diff) else (0.0 if diff == 0 else float("inf"))

    def pair(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Both sides of ``key`` as arrays of the same shape, or None."""
        a, b = self.numpy.get(key), self.torch.get(key)
        if a is None or b is None:
            return None
        a, b = np.asarray(a), np.asarray(b)
        if a.size != b.size:
            return None
        return a, b.reshape(a.shape)


def synthetic_view(step: int, numpy_side: Mapping[str, np.ndarray], torch_side: Mapping[str, np.ndarray],
                   **options: Any) -> StepView:
    """A view of hand-made tensors (compute order = the NumPy dict's order): for tests and tools."""
    order = list(dict.fromkeys([*numpy_side, *torch_side]))
    phases = options.pop("phases", None) or {k: keys.phase_of(k, set(), {"loss"}) for k in order}
    rtol, atol = options.pop("rtol", None), options.pop("atol", None)
    comparisons = {k: compare_tensor(k, numpy_side.get(k), torch_side.get(k), rtol, atol) for k in order}
    diverged = [k for k in order if comparisons[k].status in DIVERGING]
    return StepView(step, numpy_side, torch_side, dict(numpy_side), order, phases, comparisons, diverged,
                    diverged[0] if diverged else None, **options)


def view_of(engine: Engine, step: int) -> StepView:
    """The view of ``step`` of a run (recomputed from a checkpoint if it left the window)."""
    record = engine.record(step)
    local = record.local if record.local is not None else record.numpy
    batch = engine.live.data.batch(record.epoch, record.index)
    inputs = set(batch)
    order = engine.compute_order(record)
    phases = {k: engine.phase_of(k) for k in order}
    comparisons = {}
    judged = engine.trace.step_status(step) if step < engine.trace.steps else {}
    for key in order:
        direct = key in inputs or (step == 0 and phases[key] == "before")
        numpy_side = record.numpy if direct else local
        # The engine's comparison (its tolerances, an update's floor), and its referee's word: rounding only.
        comparison = engine.compare_pair(record, key, numpy_side)
        if judged.get(key) == Status.ROUNDING and comparison.status in DIVERGING:
            comparison = dataclasses.replace(comparison, status=Status.ROUNDING)
        comparisons[key] = comparison
    # Rounding pairs stay on the list for the rules that explain rounding (precision, kinks), and agree for those
    # that need a pair to agree (the update rule's "the gradients agree").
    diverged = [k for k in order if comparisons[k].status in (*DIVERGING, Status.ROUNDING)
                and (phases[k] != "before" or step == 0)]
    first = engine.first_divergence
    lead = first.tensor if first is not None and first.step == step else (diverged[0] if diverged else None)
    numpy_view = {k: (record.numpy[k] if (k in inputs or (step == 0 and phases[k] == "before")) and k in record.numpy
                      else v) for k, v in local.items()}
    return StepView(
        step=step, numpy=numpy_view, torch=record.torch, free_numpy=record.numpy, order=order, phases=phases,
        comparisons=comparisons, diverged=diverged, lead=lead, weights=engine.live.numpy_weight_names(record),
        torch_only=list(engine.unmapped_torch), device=engine.device, tf32=engine.tf32,
        torch_dtype=engine.dtype_name, hyper=dict(engine.scenario.hyper),
        batch_size=_batch_size(batch), target_sizes=_target_sizes(batch),
    )


def _batch_size(batch: Mapping[str, np.ndarray]) -> int:
    for array in batch.values():
        arr = np.asarray(array)
        if arr.ndim:
            return int(arr.shape[0])
    return 1


def _target_sizes(batch: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    """Total element counts of the batch arrays (a target of N x K gives N*K)."""
    return tuple(sorted({int(np.size(a)) for a in batch.values()}))
