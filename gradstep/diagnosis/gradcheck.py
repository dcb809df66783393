"""Finite differences: which side's gradient is the true derivative of its own loss.

At a step, for each weight of each side, central differences of the side's own
loss (NumPy: ``numpy.forward`` + ``numpy.loss`` on float64 copies of its weights;
torch: ``torch.forward`` + ``torch.loss`` on a float64 copy of the model) are
compared with the gradient the side gives: NumPy's ``backward`` re-run in
float64, torch's gradient as recorded in the run (so an accumulated gradient
shows). Big tensors are checked on a sample of their elements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradstep import keys
from gradstep.diagnosis.numeric import constant_ratio
from gradstep.diagnosis.replica import NumpyReplica, TorchReplica, one_thread
from gradstep.engine import Engine
from gradstep.trace import StepRecord

SAMPLE = 24


@dataclass(frozen=True)
class GradCheck:
    """One weight of one side: its gradient against central differences of its loss."""

    side: str
    weight: str
    size: int
    checked: int
    matches: bool
    ratio: float | None  # given / finite difference, when that is one constant other than 1
    max_error: float  # greatest |given - fd| over the checked elements, relative to their scale
    index: tuple[int, ...]  # the worst element
    given: float
    finite_difference: float
    loss: float
    fresh_matches: bool | None = None  # torch: does a fresh autograd gradient match (when the recorded one does not)?
    mismatched: tuple[tuple[int, ...], ...] = ()


def gradcheck(engine: Engine, step: int, sample: int = SAMPLE) -> list[GradCheck]:
    """Both sides' checks at ``step``: NumPy's first, then torch's."""
    record = engine.record(step)
    with one_thread():
        return [*numpy_gradcheck(engine, record, sample), *torch_gradcheck(engine, record, sample)]


def numpy_gradcheck(engine: Engine, record: StepRecord, sample: int = SAMPLE) -> list[GradCheck]:
    names = engine.live.numpy_weight_names(record)
    replica = NumpyReplica(engine, record, {n: record.numpy[keys.before(n)] for n in names})
    given = replica.step_outputs()
    loss = replica.loss()
    out = []
    for name in names:
        analytic = given.get(keys.grad(name))
        if analytic is None or np.size(analytic) != np.size(replica.weights[name]):
            continue
        weights = {n: w.copy() for n, w in replica.weights.items()}

        def loss_at(flat_index: int, value: float, name: str = name, weights: dict = weights) -> float:
            w = weights[name].reshape(-1)
            old = w[flat_index]
            w[flat_index] = value
            try:
                return replica.loss(weights)
            finally:
                w[flat_index] = old

        fd, idx = central_differences(replica.weights[name], np.asarray(analytic), loss_at, sample)
        out.append(_judge("numpy", name, np.asarray(analytic, dtype=np.float64), fd, idx, loss, 1e-6))
    return out


def torch_gradcheck(engine: Engine, record: StepRecord, sample: int = SAMPLE) -> list[GradCheck]:
    replica = TorchReplica(engine, record)
    fresh = replica.step_outputs()
    loss = replica.loss()
    out = []
    for name in replica.weight_names:
        recorded = record.torch.get(keys.grad(name))
        start = replica.weight(name)
        if recorded is None or np.size(recorded) != start.size:
            continue

        def loss_at(flat_index: int, value: float, name: str = name, start: np.ndarray = start) -> float:
            w = start.copy().reshape(-1)
            w[flat_index] = value
            replica.set_weight(name, w.reshape(start.shape))
            try:
                return replica.loss()
            finally:
                replica.set_weight(name, start)

        recorded64 = np.asarray(recorded, dtype=np.float64).reshape(start.shape)
        fd, idx = central_differences(start, recorded64, loss_at, sample)
        tol = _recorded_tolerance(engine, np.asarray(recorded).dtype)
        check = _judge("torch", name, recorded64, fd, idx, loss, tol)
        fresh_grad = fresh.get(keys.grad(name))
        if not check.matches and fresh_grad is not None:
            again = _judge("torch", name, np.asarray(fresh_grad).reshape(start.shape), fd, idx, loss, 1e-6)
            check = _with_fresh(check, again.matches)
        out.append(check)
    return out


def _recorded_tolerance(engine: Engine, dtype: np.dtype) -> float:
    """How far torch's own gradient may be from float64 finite differences: its dtype's (and TF32's) rounding."""
    if dtype == np.float64:
        return 1e-6
    return 3e-3 if engine.tf32 else 1e-4


def central_differences(
    weight: np.ndarray, given: np.ndarray, loss_at: Callable[[int, float], float], sample: int
) -> tuple[np.ndarray, np.ndarray]:
    """d loss / d weight at sampled flat indices (the largest given gradients first, then spread)."""
    flat = np.asarray(weight, dtype=np.float64).reshape(-1)
    idx = sample_indices(np.asarray(given).reshape(-1), sample)
    fd = np.empty(len(idx))
    for i, j in enumerate(idx):
        w = float(flat[j])
        h = 1e-6 * max(1.0, abs(w))
        fd[i] = (loss_at(int(j), w + h) - loss_at(int(j), w - h)) / (2 * h)
    return fd, idx


def sample_indices(given: np.ndarray, sample: int) -> np.ndarray:
    size = given.size
    if size <= sample:
        return np.arange(size)
    magnitude = np.abs(np.nan_to_num(np.asarray(given, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0))
    largest = np.argsort(-magnitude, kind="stable")[: sample // 3]
    rest = np.setdiff1d(np.arange(size), largest)
    spread = np.random.default_rng(0).choice(rest, size=sample - len(largest), replace=False)
    return np.sort(np.concatenate([largest, spread]))


def _judge(side: str, name: str, given: np.ndarray, fd: np.ndarray, idx: np.ndarray, loss: float,
           rtol: float) -> GradCheck:
    g = np.asarray(given, dtype=np.float64).reshape(-1)[idx]
    error = np.abs(g - fd)
    scale = max(float(np.max(np.abs(g), initial=0.0)), float(np.max(np.abs(fd), initial=0.0)))
    allowed = rtol * scale + 1e-8 * (1.0 + abs(loss))
    bad = ~(error <= allowed)
    worst = int(np.argmax(np.where(np.isnan(error), np.inf, error))) if len(idx) else 0
    shape = np.shape(given)
    largest = float(np.max(error, initial=0.0))
    ratio = None
    if bad.any():
        r = constant_ratio(g, fd, max(rtol * 10, 1e-6))
        ratio = r if r is not None and abs(r - 1.0) > max(rtol * 10, 1e-6) else None
    return GradCheck(
        side=side, weight=name, size=int(np.size(given)), checked=len(idx), matches=not bool(bad.any()),
        ratio=ratio, max_error=largest / scale if scale else largest,
        index=_unravel(idx, worst, shape), given=float(g[worst]) if len(idx) else 0.0,
        finite_difference=float(fd[worst]) if len(idx) else 0.0, loss=loss,
        mismatched=tuple(_unravel(idx, int(i), shape) for i in np.flatnonzero(bad)[:8]),
    )


def _unravel(idx: np.ndarray, position: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    if not len(idx):
        return ()
    return tuple(int(i) for i in np.unravel_index(int(idx[position]), shape)) if shape else ()


def _with_fresh(check: GradCheck, fresh_matches: bool) -> GradCheck:
    from dataclasses import replace

    return replace(check, fresh_matches=fresh_matches)
