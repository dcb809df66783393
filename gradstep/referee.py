"""The precision referee: does a step's local error mean different math, or only rounding?

Two sides that compute the same math from the same weights still differ by
rounding: sums taken in another order, and now and then an element that sits
within rounding of a kink (ReLU's 0, a max, a comparison), so that the two sides
take different branches there and differ by a whole term. Elementwise
tolerances cannot tell that from a bug. Precision can: the referee re-runs the
step of both sides in a second precision, from the same weights, state and
batch, and compares how far apart the sides are in each.

- A run in float32 (either side) is re-run in float64. The same math agrees
  there some 2^29 times more closely, at a kink too (in float64 both sides
  see the same sign); different math differs by about as much as before.
- A run in float64 is probed in float32: there the same math differs some
  2^29 times *more*, while a difference in the math stays the size it was.

Either way the verdict is one ratio per pair: the higher precision's greatest
difference over the lower one's. Rounding shrinks it by orders of magnitude
(``SHRINK``); different math leaves it near 1.

A float32 run tries a cheaper test first, which needs neither torch in float64
nor torch's optimizer state (a replay from a checkpoint): the NumPy side alone
re-run in float64. Where torch's float32 value is about as close to that as the
NumPy side's own float32 value is (``NOISE_RATIO``), torch differs from the
float64 result by no more than rounding does, and the pair is rounding. A
kink, where torch took the other branch, fails this test and goes on to the
full re-run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradstep import keys
from gradstep.compare import lower_precision, normwise_error
from gradstep.kernel import MAX_ABS, NO_TOLERANCE, SQ_A, SQ_B, SQ_DIFF, scan_pair
from gradstep.numfmt import fmt
from gradstep.scenario import Scenario
from gradstep.sides import NumpyRunner, ScenarioError, TorchRunner
from gradstep.trace import StepRecord

# Rounding when the higher precision's difference is at most this fraction of the lower one's.
# The same math shrinks by ~1e-9 (float32 -> float64), different math by ~1: anything between
# separates them; 1e-3 keeps six orders of magnitude either way.
SHRINK = 1e-3
# The quick test: torch's float32 distance from NumPy's float64 re-run, at most this many times NumPy's own.
# Two float32 implementations of the same sums differ in accuracy by small factors, not by orders.
NOISE_RATIO = 8.0
# Not for weights and updates: storing a weight in float32 rounds it by far more than a small update
# changes, so NumPy's own noise there could hide a learning rate that is off; the full re-run decides.
_STORED_PHASES = ("before", "update", "after")


@dataclass(frozen=True)
class Judgement:
    """The referee's verdict on one pair at one step, with the numbers behind it."""

    key: str
    rounding: bool
    run_precision: str  # the run's (lower) precision of the pair
    referee_precision: str
    run_diff: float  # greatest |numpy - torch| in the run, both sides from the same weights
    referee_diff: float  # the same in the referee's precision
    referee_rel: float  # normwise there: ||numpy - torch|| / max(||numpy||, ||torch||)
    witness: str = ""  # the kink that explains a rounding verdict, when one was found
    numpy_noise: float = math.nan  # the quick test: NumPy's own float32 distance from its float64 re-run
    below_resolution: bool = False  # the sides differ in float64, by less than the run's precision resolves

    @property
    def quick(self) -> bool:
        """Decided by the NumPy side's float64 re-run alone (torch's distance against NumPy's own noise)."""
        return not math.isnan(self.numpy_noise)

    def short(self) -> str:
        """A few words for a title line."""
        if self.quick:
            return f"≈ rounding only: torch as close to float64 as NumPy ({fmt(self.referee_diff)})"
        if self.below_resolution:
            return f"≈ rounding only: float64 differs by {fmt(self.referee_rel)}, below {self.run_precision}'s eps"
        if self.rounding:
            return f"≈ rounding only: {self.referee_precision} difference {fmt(self.referee_diff)}"
        return f"different math: {self.referee_precision} still differs by {fmt(self.referee_diff)}"

    def sentence(self) -> str:
        """What decided, in one sentence with its numbers."""
        if self.quick:
            return (f"rounding only: torch's {self.run_precision} value is within {fmt(self.referee_diff)} of the "
                    f"NumPy side re-run in float64, and NumPy's own {self.run_precision} value within "
                    f"{fmt(self.numpy_noise)}: torch is off by no more than rounding")
        if self.below_resolution:
            return (f"rounding only: in float64 the sides differ by {fmt(self.referee_rel)} of their size, less "
                    f"than {self.run_precision} resolves ({fmt(float(np.finfo(self.run_precision).eps))}): "
                    f"in {self.run_precision} they are the same math")
        if not self.rounding:
            return (f"different math: in {self.referee_precision} the sides still differ by "
                    f"{fmt(self.referee_diff)} (rel {fmt(self.referee_rel)}); in {self.run_precision}, "
                    f"{fmt(self.run_diff)}")
        if self.referee_precision == "float64":
            agree = (f"in float64 both sides agree to {fmt(self.referee_diff)} "
                     f"(in {self.run_precision} they differ by {fmt(self.run_diff)})")
        else:
            agree = (f"the sides differ by {fmt(self.run_diff)} in float64 and by {fmt(self.referee_diff)} "
                     "in float32: the difference scales with the precision")
        return f"rounding only: {self.witness + '; ' if self.witness else ''}{agree}"


@dataclass(frozen=True)
class RefereeReport:
    """Every judged pair of one step; ``failure`` says why the referee could not run (nothing is rounding then)."""

    step: int
    precision: str
    judgements: dict[str, Judgement]
    failure: str = ""

    def rounding(self, key: str) -> bool:
        judgement = self.judgements.get(key)
        return judgement is not None and judgement.rounding

    def summary(self) -> str:
        """The step's rounding verdicts in one sentence: which pairs, the kink, the two precisions' differences."""
        rounded = [j for j in self.judgements.values() if j.rounding]
        if not rounded:
            return ""
        names = ", ".join(j.key for j in rounded)
        witness = next((j.witness for j in rounded if j.witness), "")
        run = max(j.run_diff for j in rounded)
        ref = max(j.referee_diff for j in rounded)
        low = rounded[0].run_precision
        if self.precision == "float64":
            numbers = (f"in float64 the sides agree to {fmt(ref)} or better, where in {low} they differed by "
                       f"up to {fmt(run)}")
        else:
            numbers = f"they differ by up to {fmt(run)} in float64 and {fmt(ref)} in float32: it scales with precision"
        return f"step {self.step}: {names} differ only by rounding: {witness + '; ' if witness else ''}{numbers}"


@dataclass
class TorchStart:
    """What the torch side's step starts from besides its weights: its ``state``, its optimizer's, and the
    gradients its parameters hold (which accumulate into this step's when nobody zeroes them)."""

    torch_state: Mapping[str, Any]
    optimizer_state: Mapping[str, Any] | None
    grads: Mapping[str, Any]


def referee_precision(record: StepRecord, judged: list[str]) -> str:
    """float64 when a judged pair is in a lower precision on either side; else float32 (a probe)."""
    for key in judged:
        for side in (record.local or record.numpy, record.torch):
            value = side.get(key)
            if value is not None and np.asarray(value).dtype.kind == "f" and np.asarray(value).dtype.itemsize < 8:
                return "float64"
    return "float32"


def judge(scenario: Scenario, hp: Any, data: Any, record: StepRecord, numpy_state: Mapping[str, Any],
          torch_start: Callable[[], TorchStart], judged: list[str], retain: tuple[str, ...] | None,
          phases: Mapping[str, str]) -> RefereeReport:
    """Re-run ``record``'s step in another precision and judge each pair of ``judged``.

    Both sides start from the torch side's weights of the step (as the local
    error does), the same batch, ``numpy_state`` and the torch state
    ``torch_start()`` gives (asked for only when torch has to be re-run: it may
    replay the run to that step).
    """
    precision = referee_precision(record, judged)
    run_side = record.local if record.local is not None else record.numpy
    try:
        numpy_out = _numpy_rerun(scenario, hp, data, record, numpy_state, precision)
        judgements = {}
        if precision == "float64" and not _branches_apart(numpy_out, run_side, record.torch, phases):
            quick = [k for k in judged if phases.get(k) not in _STORED_PHASES]
            judgements = {k: j for k in quick
                          if (j := _quick_judgement(k, run_side.get(k), record.torch.get(k), numpy_out.get(k)))}
        rest = [k for k in judged if k not in judgements]
        if rest:
            torch_out = _torch_rerun(scenario, hp, data, record, torch_start(), precision, retain)
            witness = _kink_witness(run_side, record.torch, rest, phases)
            for key in rest:
                judgements[key] = _judge_pair(key, run_side.get(key), record.torch.get(key), numpy_out.get(key),
                                              torch_out.get(key), precision, witness)
    except Exception as error:  # user code in another precision: anything can happen
        return RefereeReport(record.step, precision, {}, f"the {precision} re-run failed: {_short(error)}")
    return RefereeReport(record.step, precision, {k: judgements[k] for k in judged})


def _branches_apart(numpy64: Mapping[str, Any], run_a: Mapping[str, Any], run_b: Mapping[str, Any],
                    phases: Mapping[str, str]) -> bool:
    """Whether an activation has a different sign on some side than in NumPy's float64 re-run: a branch
    taken apart at a kink, whose difference is a whole term rather than smooth noise. The quick test
    compares the sizes of smooth noise; a kink needs the full re-run."""
    for key, reference in numpy64.items():
        if phases.get(key) != "forward" or key not in run_a or key not in run_b:
            continue
        sign = np.sign(np.asarray(reference))
        for side in (run_a[key], run_b[key]):
            if np.shape(side) == sign.shape and not np.array_equal(np.sign(np.asarray(side)), sign):
                return True
    return False


def _quick_judgement(key: str, run_a: Any, run_b: Any, numpy64: Any) -> Judgement | None:
    """Rounding when torch's float32 value is about as close to NumPy's float64 re-run as NumPy's own is."""
    if run_a is None or run_b is None or numpy64 is None or not (np.size(run_a) == np.size(run_b) == np.size(numpy64)):
        return None
    noise = _greatest_difference(run_a, numpy64)
    off = _greatest_difference(run_b, numpy64)
    if noise == 0 or not math.isfinite(off) or off > NOISE_RATIO * noise:
        return None
    run_precision = lower_precision(np.asarray(run_a).dtype, np.asarray(run_b).dtype).name
    return Judgement(key, True, run_precision, "float64", _greatest_difference(run_a, run_b), off,
                     _normwise(run_b, numpy64), numpy_noise=noise)


def _judge_pair(key: str, run_a: Any, run_b: Any, ref_a: Any, ref_b: Any, precision: str,
                witness: str) -> Judgement:
    run_precision = lower_precision(np.asarray(run_a).dtype, np.asarray(run_b).dtype).name
    run_diff = _greatest_difference(run_a, run_b)
    if ref_a is None or ref_b is None or np.size(ref_a) != np.size(run_a) or np.size(ref_b) != np.size(run_b):
        return Judgement(key, False, run_precision, precision, run_diff, math.nan, math.nan)
    ref_diff = _greatest_difference(ref_a, ref_b)
    ref_rel = _normwise(ref_a, ref_b)
    # A float64 referee: rounding shrinks there. The float32 probe of a float64 run: rounding grows
    # there. Different math stays the size it was either way.
    rounding = ref_diff <= SHRINK * run_diff if precision == "float64" else run_diff <= SHRINK * ref_diff
    rounding = rounding and math.isfinite(run_diff) and math.isfinite(ref_diff)  # NaN/Inf is never rounding
    # A difference in the math smaller than the run's precision (a float32 learning rate against a
    # float64 one: 1.5e-8) cannot show in that precision: the sides are the same math there.
    below = precision == "float64" and not rounding and ref_rel <= float(np.finfo(run_precision).eps)
    return Judgement(key, bool(rounding or below), run_precision, precision, run_diff, ref_diff, ref_rel,
                     witness if rounding else "", below_resolution=bool(below))


def _normwise(a: Any, b: Any) -> float:
    row = _scanned(a, b)
    return math.inf if row is None else normwise_error(row[SQ_DIFF], row[SQ_A], row[SQ_B])


def _greatest_difference(a: Any, b: Any) -> float:
    row = _scanned(a, b)
    return math.inf if row is None else float(row[MAX_ABS])


def _scanned(a: Any, b: Any) -> np.ndarray | None:
    """The comparison kernel's row of the pair (None when their sizes differ); no tolerance applies here."""
    a, b = np.asarray(a), np.asarray(b)
    if a.size != b.size:
        return None
    return scan_pair(a, b, 0.0, NO_TOLERANCE)


# ---- the re-run ---------------------------------------------------------------

_NP_DTYPES = {"float64": np.float64, "float32": np.float32}
_TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _start_weights(record: StepRecord, np_dtype: Any) -> dict[str, np.ndarray]:
    """The torch side's weights at the start of the step (NumPy names and layout), in the referee's precision;
    the NumPy side's own where torch has no counterpart."""
    names = [keys.base_name(k) for k in record.numpy if k.startswith("before ")]
    return {n: _cast(record.torch.get(keys.before(n), record.numpy[keys.before(n)]), np_dtype) for n in names}


def _referee_hyper(hp: Any, precision: str) -> Any:
    hp_ref = copy.copy(hp)
    hp_ref.torch_dtype = _TORCH_DTYPES[precision]
    return hp_ref


def _numpy_rerun(scenario: Scenario, hp: Any, data: Any, record: StepRecord, numpy_state: Mapping[str, Any],
                 precision: str) -> dict[str, np.ndarray]:
    np_dtype = _NP_DTYPES[precision]
    runner = NumpyRunner(scenario, _referee_hyper(hp, precision), _start_weights(record, np_dtype))
    runner.state = _cast_tree(numpy_state, np_dtype, _TORCH_DTYPES[precision])
    batch = data.batch(record.epoch, record.index)
    return runner.step({n: _cast(a, np_dtype) for n, a in batch.items()})


def _torch_rerun(scenario: Scenario, hp: Any, data: Any, record: StepRecord, start: TorchStart, precision: str,
                 retain: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    np_dtype, torch_dtype = _NP_DTYPES[precision], _TORCH_DTYPES[precision]
    runner = TorchRunner(dataclasses.replace(scenario, share_init=True), _referee_hyper(hp, precision),
                         _start_weights(record, np_dtype), hp.device, torch_dtype)
    _load_unmapped(runner, record.torch)
    for name, grad in start.grads.items():
        if name in runner.params and grad is not None:
            runner.params[name].grad = grad.detach().to(dtype=torch_dtype).clone()
    if start.optimizer_state is not None and runner.optimizer is not None:
        runner.optimizer.load_state_dict(copy.deepcopy(start.optimizer_state))  # casts to the params' dtype
    runner.state = _cast_tree(start.torch_state, np_dtype, torch_dtype)
    runner.retain = retain
    return runner.step(data.batch(record.epoch, record.index))


def _cast(array: Any, dtype: Any) -> np.ndarray:
    arr = np.asarray(array)
    return arr.astype(dtype) if arr.dtype.kind == "f" else arr.copy()


def _cast_tree(tree: Any, np_dtype: Any, torch_dtype: torch.dtype) -> Any:
    """A deep copy of a side's ``state`` with its float arrays and tensors in the referee's precision."""
    if isinstance(tree, np.ndarray):
        return _cast(tree, np_dtype)
    if torch.is_tensor(tree):
        return tree.detach().to(torch_dtype).clone() if tree.is_floating_point() else tree.detach().clone()
    if isinstance(tree, np.floating):
        return np_dtype(tree)
    if isinstance(tree, dict):
        return type(tree)((k, _cast_tree(v, np_dtype, torch_dtype)) for k, v in tree.items())
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cast_tree(v, np_dtype, torch_dtype) for v in tree)
    return copy.deepcopy(tree)


def _load_unmapped(runner: TorchRunner, torch_side: Mapping[str, np.ndarray]) -> None:
    with torch.no_grad():
        for name in runner.unmapped:
            value = torch_side.get(keys.before(name))
            if value is not None:
                param = runner.params[name]
                param.copy_(torch.as_tensor(np.asarray(value), dtype=param.dtype, device=param.device))


# ---- what explains a rounding verdict ----------------------------------------------


def _kink_witness(run_side: Mapping[str, np.ndarray], torch_side: Mapping[str, np.ndarray], judged: list[str],
                  phases: Mapping[str, str]) -> str:
    """An activation that the two sides put on different sides of 0 where a judged pair differs most.

    A ReLU, an abs, a sign or a comparison with 0 branches there: within
    rounding of 0, the two sides can branch differently and differ by a whole
    term downstream, though both computed the same thing.
    """
    activations = [k for k in run_side if phases.get(k) == "forward" and k in torch_side]
    for key in judged:
        a, b = run_side.get(key), torch_side.get(key)
        if a is None or b is None or np.shape(a) != np.shape(b) or not np.size(a):
            continue
        index = np.unravel_index(int(np.argmax(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))),
                                 np.shape(a))
        for act in activations:
            x, y = np.asarray(run_side[act]), np.asarray(torch_side[act])
            if x.shape != np.shape(a) or y.shape != x.shape:
                continue
            xv, yv = x[index], y[index]
            if np.sign(xv) != np.sign(yv):
                where = f"{act}[{', '.join(str(int(i)) for i in index)}]"
                precision = lower_precision(x.dtype, y.dtype).name
                return (f"{where} is {fmt(xv)} on the NumPy side and {fmt(yv)} on torch's: within {precision} "
                        f"rounding of a kink at 0 (ReLU, abs, a comparison), the two sides branched differently")
    return ""


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if not isinstance(error, ScenarioError) else text
