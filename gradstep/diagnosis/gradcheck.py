"""Finite differences: which side's gradient is the true derivative of its own loss.

At a step, for each weight of each side, differences of the side's own loss
(NumPy: ``numpy.forward`` + ``numpy.loss`` on float64 copies of its weights;
torch: ``torch.forward`` + ``torch.loss`` on a float64 copy of the model) are
compared with the gradient the side gives: NumPy's ``backward`` re-run in
float64, torch's gradient as recorded in the run (so an accumulated gradient
shows).

What makes them trustworthy:

* the step is relative to each element's magnitude (or the tensor's, for an
  element near zero): h = ∛ε · max(|w|, mean |w|);
* two steps, h and h/10, must agree: the central difference at h/10 is the
  estimate, and an element where the two part for no reason below is left
  without a verdict;
* one-sided differences at h/10, forward against backward, find a kink: at a
  smooth point they differ by h·L'' and shrink with the step, across a kink
  (ReLU at 0, max, abs, clip) they differ by the jump in the slope whatever the
  step. An element at a kink has no verdict ("at a kink");
* the allowance is the gradient's own dtype's rounding and the differences'
  rounding error, ε·|L|/h, never a fixed absolute floor;
* big tensors are checked on a sample (the largest gradients and a fixed random
  spread), so the cost is bounded: 4 loss evaluations per sampled element.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from gradstep import keys
from gradstep.diagnosis.numeric import constant_ratio
from gradstep.diagnosis.optimizers import coupled_decay
from gradstep.diagnosis.replica import NumpyReplica, TorchReplica, one_thread, scalar_loss
from gradstep.engine import Engine
from gradstep.trace import StepRecord

SAMPLE = 24
STEP = float(np.finfo(np.float64).eps) ** (1 / 3)  # ~6e-6: balances truncation (h²) against rounding (ε/h)
SMALLER = 10.0  # the second step is h / SMALLER


@dataclass(frozen=True)
class GradCheck:
    """One weight of one side: its gradient against finite differences of its loss.

    ``verdict`` is ``"matches"``, ``"differs"`` or ``"no verdict"`` (every
    checked element at a kink, or with step sizes that do not agree);
    ``matches`` is ``verdict == "matches"``.
    """

    side: str
    weight: str
    size: int
    checked: int
    verdict: str
    ratio: float | None  # given / finite difference, when that is one constant other than 1
    max_error: float  # greatest |given - fd| over the decided elements, relative to their scale
    index: tuple[int, ...]  # the worst element
    given: float
    finite_difference: float
    loss: float
    fresh_matches: bool | None = None  # torch: does a fresh autograd gradient match (when the recorded one does not)?
    mismatched: tuple[tuple[int, ...], ...] = ()
    kinks: int = 0  # checked elements at a kink: one-sided differences disagree at every step size
    unsettled: int = 0  # checked elements whose two step sizes disagree (no kink at the element itself)
    optimizer_decay: float = 0.0  # torch: matched once its optimizer's weight decay λ·w was added (L2 in SGD…)

    @property
    def matches(self) -> bool:
        return self.verdict == "matches"

    @property
    def differs(self) -> bool:
        return self.verdict == "differs"

    @property
    def convicts(self) -> bool:
        """Strong enough to say a gradient is wrong: it differs on elements with agreeing step sizes and no
        kink, and, for torch, its fresh float64 autograd gradient (the referee) agrees with the verdict."""
        if not self.differs or self.kinks or self.unsettled:
            return False
        return self.side != "torch" or self.fresh_matches is not None


def gradcheck(engine: Engine, step: int, sample: int = SAMPLE, seconds: float | None = None) -> list[GradCheck]:
    """Both sides' checks at ``step``: NumPy's first, then torch's.

    ``seconds`` bounds the whole check: each weight gets its share, and one whose
    loss is slow to evaluate is checked on fewer elements (``checked`` says how many).
    """
    record = engine.record(step)
    deadline = None if seconds is None else time.perf_counter() + seconds
    with one_thread():
        mine = numpy_gradcheck(engine, record, sample, _half(deadline))
        return [*mine, *torch_gradcheck(engine, record, sample, deadline)]


def _half(deadline: float | None) -> float | None:
    return None if deadline is None else time.perf_counter() + (deadline - time.perf_counter()) / 2


def _share(deadline: float | None, left: int) -> float | None:
    """This weight's deadline: an equal share of what is left among the ``left`` weights still to check."""
    if deadline is None:
        return None
    return time.perf_counter() + max(0.0, deadline - time.perf_counter()) / max(left, 1)


def numpy_gradcheck(engine: Engine, record: StepRecord, sample: int = SAMPLE,
                    deadline: float | None = None) -> list[GradCheck]:
    names = engine.live.numpy_weight_names(record)
    replica = NumpyReplica(engine, record, {n: record.numpy[keys.before(n)] for n in names})
    given = replica.step_outputs()
    loss = scalar_loss(given)  # the step just run gave it: a step function's loss is its whole step again
    out = []
    for left, name in zip(range(len(names), 0, -1), names, strict=True):
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

        fd = finite_differences(replica.weights[name], np.asarray(analytic), loss_at, loss, sample,
                                _share(deadline, left))
        out.append(_judge("numpy", name, np.asarray(analytic, dtype=np.float64), fd, 1e-6))
    return out


def torch_gradcheck(engine: Engine, record: StepRecord, sample: int = SAMPLE,
                    deadline: float | None = None) -> list[GradCheck]:
    replica = TorchReplica(engine, record)
    fresh = replica.step_outputs()
    loss = scalar_loss(fresh)
    out = []
    names = replica.weight_names
    for left, name in zip(range(len(names), 0, -1), names, strict=True):
        recorded = record.torch.get(keys.grad(name))
        start = replica.weight(name)
        if recorded is None or np.size(recorded) != start.size:
            continue
        set_element = replica.element_setter(name)

        def loss_at(flat_index: int, value: float, set_element: Callable = set_element) -> float:
            old = set_element(flat_index, value)  # one element, in place: a big weight is never copied
            try:
                return replica.loss()
            finally:
                set_element(flat_index, old)

        recorded64 = np.asarray(recorded, dtype=np.float64).reshape(start.shape)
        fd = finite_differences(start, recorded64, loss_at, loss, sample, _share(deadline, left))
        tol = _recorded_tolerance(engine, np.asarray(recorded).dtype)
        check = _judge("torch", name, recorded64, fd, tol)
        check = _with_optimizer_decay(engine, name, check, recorded64, start, fd, tol)
        fresh_grad = fresh.get(keys.grad(name))
        if check.differs and fresh_grad is not None:
            again = _judge("torch", name, np.asarray(fresh_grad).reshape(start.shape), fd, 1e-6)
            check = _with_fresh(check, again.matches)
        out.append(check)
    return out


def _with_optimizer_decay(engine: Engine, name: str, check: GradCheck, recorded: np.ndarray, weight: np.ndarray,
                          fd: Differences, tol: float) -> GradCheck:
    """torch's .grad plus the weight decay its optimizer adds: the gradient the update uses. When the loss holds
    the penalty that decay stands for (decay in the optimizer, the penalty in the loss reported), that sum is
    the loss's derivative and .grad alone is not."""
    if not check.differs:
        return check
    decay = coupled_decay(engine, name, weight)
    if not np.any(decay):
        return check
    again = _judge("torch", name, recorded + decay * np.asarray(weight, dtype=np.float64), fd, tol)
    if not again.matches:
        return check
    return replace(again, optimizer_decay=float(np.max(decay)))


def _recorded_tolerance(engine: Engine, dtype: np.dtype) -> float:
    """How far torch's own gradient may be from float64 finite differences: its dtype's (and TF32's) rounding."""
    if dtype == np.float64:
        return 1e-6
    return 3e-3 if engine.tf32 else 1e-4


@dataclass(frozen=True)
class Differences:
    """Finite differences at sampled flat indices, with what each element's one-sided differences say."""

    index: np.ndarray
    estimate: np.ndarray  # the central difference at the smaller step
    kink: np.ndarray  # bool: at a kink
    unsettled: np.ndarray  # bool: the two steps disagree without a kink at the element
    rounding: np.ndarray  # the differences' own rounding error, per element
    loss: float


def finite_differences(weight: np.ndarray, given: np.ndarray, loss_at: Callable[[int, float], float], loss: float,
                       sample: int, deadline: float | None = None) -> Differences:
    """d loss / d weight at sampled flat indices (the largest given gradients first, then spread).

    Two central differences (h and h/10, h relative to the element), and the forward and backward differences
    at h/10, per element (see the module docstring).
    """
    flat = np.asarray(weight, dtype=np.float64).reshape(-1)
    idx = sample_indices(np.asarray(given).reshape(-1), sample)
    # An all-zero tensor (a zero init) has no magnitude of its own: steps relative to 1, as for unit weights.
    typical = float(np.mean(np.abs(flat))) if flat.size and np.any(flat) else 1.0
    n = len(idx)
    big, small, gap, gap_small, rounding = (np.empty(n) for _ in range(5))
    eps = float(np.finfo(np.float64).eps)
    for i, j in enumerate(idx):
        if deadline is not None and i >= 2 and time.perf_counter() > deadline:
            idx, n = idx[:i], i  # out of time: the elements done so far (the largest gradients come first)
            big, small, gap, gap_small, rounding = big[:i], small[:i], gap[:i], gap_small[:i], rounding[:i]
            break
        w = float(flat[j])
        h = STEP * max(abs(w), typical)
        hs = h / SMALLER
        plus, minus = loss_at(int(j), w + h), loss_at(int(j), w - h)
        plus_s, minus_s = loss_at(int(j), w + hs), loss_at(int(j), w - hs)
        big[i] = (plus - minus) / (2 * h)
        small[i] = (plus_s - minus_s) / (2 * hs)
        # forward minus backward difference: h·L'' where smooth, the jump in the slope across a kink
        gap[i] = abs(plus - 2 * loss + minus) / h
        gap_small[i] = abs(plus_s - 2 * loss + minus_s) / hs
        rounding[i] = 8 * eps * max(abs(loss), abs(plus_s), abs(minus_s), 1e-300) / hs
    scale = max(float(np.max(np.abs(small), initial=0.0)), float(np.max(np.abs(given), initial=0.0)), 1e-300)
    noise = rounding + 1e-9 * scale
    # A kink at the element: the one-sided gap does not shrink with the step (smooth: a tenth of it).
    kink = (gap_small > 10 * noise) & (gap_small > 0.5 * gap)
    steps_agree = np.abs(big - small) <= 10 * noise + 1e-3 * np.abs(small)
    smooth_small = gap_small <= 10 * noise + 0.2 * gap  # a kink only the larger step reached: the smaller is good
    unsettled = ~kink & ((~steps_agree & ~smooth_small) | (10 * rounding > 1e-2 * scale))  # or lost in rounding
    return Differences(idx, small, kink, unsettled, rounding, loss)


def sample_indices(given: np.ndarray, sample: int) -> np.ndarray:
    """The largest third of ``sample`` by magnitude (largest first), then a fixed random spread of the rest.

    Linear in the tensor's size: a partial partition, not a sort, and random draws without a set difference.
    """
    size = given.size
    if size <= sample:
        return np.arange(size)
    magnitude = np.abs(np.nan_to_num(np.asarray(given, dtype=np.float64).reshape(-1), nan=0.0, posinf=0.0,
                                     neginf=0.0))
    k = sample // 3
    largest = np.argpartition(-magnitude, k)[:k] if k else np.zeros(0, dtype=np.int64)
    largest = largest[np.argsort(-magnitude[largest], kind="stable")]
    taken = set(int(i) for i in largest)
    rng = np.random.default_rng(0)
    spread: list[int] = []
    while len(spread) < sample - k:
        j = int(rng.integers(size))
        if j not in taken:
            taken.add(j)
            spread.append(j)
    return np.concatenate([largest, np.array(spread, dtype=np.int64)]).astype(np.int64)


def _judge(side: str, name: str, given: np.ndarray, fd: Differences, rtol: float) -> GradCheck:
    idx = fd.index
    g = np.asarray(given, dtype=np.float64).reshape(-1)[idx]
    decided = ~(fd.kink | fd.unsettled)
    error = np.abs(g - fd.estimate)
    scale = max(float(np.max(np.abs(g), initial=0.0)), float(np.max(np.abs(fd.estimate), initial=0.0)))
    allowed = rtol * scale + 10 * fd.rounding
    bad = decided & ~(error <= allowed)
    verdict = "no verdict" if not decided.any() else ("differs" if bad.any() else "matches")
    ranked = np.where(decided, np.where(np.isnan(error), np.inf, error), -1.0)
    worst = int(np.argmax(ranked)) if len(idx) else 0
    shape = np.shape(given)
    largest = float(np.max(error[decided], initial=0.0))
    ratio = None
    if bad.any():
        r = constant_ratio(g[decided], fd.estimate[decided], max(rtol * 10, 1e-6))
        ratio = r if r is not None and abs(r - 1.0) > max(rtol * 10, 1e-6) else None
    return GradCheck(
        side=side, weight=name, size=int(np.size(given)), checked=len(idx), verdict=verdict,
        ratio=ratio, max_error=largest / scale if scale else largest,
        index=_unravel(idx, worst, shape), given=float(g[worst]) if len(idx) else 0.0,
        finite_difference=float(fd.estimate[worst]) if len(idx) else 0.0, loss=fd.loss,
        mismatched=tuple(_unravel(idx, int(i), shape) for i in np.flatnonzero(bad)[:8]),
        kinks=int(fd.kink.sum()), unsettled=int(fd.unsettled.sum()),
    )


def _unravel(idx: np.ndarray, position: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    if not len(idx):
        return ()
    return tuple(int(i) for i in np.unravel_index(int(idx[position]), shape)) if shape else ()


def _with_fresh(check: GradCheck, fresh_matches: bool) -> GradCheck:
    return replace(check, fresh_matches=fresh_matches)
