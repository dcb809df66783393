"""Structure: a parameter one side only has, initial weights that differ, a layout, a shape."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from gradstep import keys
from gradstep.compare import Status
from gradstep.diagnosis.budget import BIG
from gradstep.diagnosis.findings import Finding, num, shape_text
from gradstep.diagnosis.numeric import agreement_tolerance, arrays_close
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.replica import NumpyReplica, loss_dict, rng_preserved
from gradstep.diagnosis.rules.dtypes import rounded_copy
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import function_for, join_names, worst_line
from gradstep.scenario import takes

# ---- a parameter on one side only ------------------------------------------------


def one_side_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    torch_only = [n for n in view.torch_only if keys.before(n) in view.torch]
    numpy_only = [w for w in view.weights if keys.before(w) not in view.torch]
    out = []
    if torch_only:
        out.append(_torch_only_finding(view, torch_only))
    if numpy_only:
        out.append(_numpy_only_finding(view, numpy_only))
    return out


def _explained_downstream(view: StepView) -> list[str]:
    """The first diverged forward tensor (or the lead): what an extra parameter changes first."""
    forward = view.diverged_in("forward", "loss")
    return forward[:1] or ([view.lead] if view.lead else [])


def _torch_only_finding(view: StepView, names: list[str]) -> Finding:
    evidence, active = [], False
    for name in names:
        value = np.asarray(view.torch[keys.before(name)], dtype=np.float64)
        grad = view.torch.get(keys.grad(name))
        gmax = float(np.max(np.abs(grad))) if grad is not None and np.size(grad) else 0.0
        vmax = float(np.max(np.abs(value))) if value.size else 0.0
        active = active or vmax > 0 or gmax > 0
        evidence.append(f"torch {name} {shape_text(value.shape)}: largest |value| {num(vmax)}, largest |gradient| "
                        f"{num(gmax)} at step {view.step}")
    biases = [n for n in names if n.endswith("bias")]
    if biases:
        cause = (f"torch has parameters the NumPy side does not: {join_names(names)}. nn.Linear adds a bias by "
                 "default (bias=True) and the NumPy model has none, so torch fits an extra offset: pass bias=False, "
                 "or give the NumPy side the same bias and map it.")
    else:
        cause = (f"torch has parameters the NumPy side does not: {join_names(names)} (no TensorMap maps them): "
                 "they change torch's outputs with nothing to match on the NumPy side.")
    explained = _explained_downstream(view) if active else []
    confidence = 0.88 if explained and biases else (0.75 if explained else 0.3)
    return Finding(rule="one-side", cause=cause, evidence=tuple(evidence), confidence=confidence, step=view.step,
                   tensor=keys.before(names[0]), side="torch", function="torch.model",
                   tensors=tuple([keys.before(n) for n in names] + explained))


def _numpy_only_finding(view: StepView, names: list[str]) -> Finding:
    evidence = [f"numpy {n} {shape_text(np.shape(view.numpy[keys.before(n)]))}" for n in names]
    cause = (f"the NumPy side has weights torch does not: {join_names(names)} (no TensorMap maps them to a torch "
             "parameter), so they are never compared and never start equal.")
    explained = _explained_downstream(view)
    return Finding(rule="one-side", cause=cause, evidence=tuple(evidence), confidence=0.7 if explained else 0.4,
                   step=view.step, tensor=keys.before(names[0]), side="numpy", function="mapping",
                   tensors=tuple([keys.before(n) for n in names] + explained))


# ---- initial weights -------------------------------------------------------------


def init_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    if view.step != 0:
        return []
    differing = [k for k in view.diverged_in("before") if layout_relation(*view.pair(k) or (None, None)) is None
                 and not rounded_copy(view.numpy[k], view.torch[k])]
    if not differing:
        return []
    share_init = getattr(probe.scenario, "share_init", True) if probe is not None else True
    evidence = []
    for key in differing:
        a, b = view.free_numpy[key], view.torch[key]
        evidence.append(worst_line(view.comparisons[key]))
        evidence.append(f"numpy {key}: {describe_values(a)}; torch: {describe_values(b)}")
    names = [keys.base_name(k) for k in differing]
    if not share_init and probe is not None and takes(probe.scenario.torch.model, 2):
        loaded = [w for w in view.weights if keys.before(w) not in differing and view.agrees(keys.before(w))]
        carried = f" It carries {join_names(loaded)} across equal." if loaded else ""
        cause = (f"the initial weights differ before step 0 ({join_names(names)}): torch.model(hp, weights) loads "
                 "init()'s weights into the model itself (share_init=False), and its loading code leaves "
                 f"{'these' if len(names) > 1 else 'this one'} as the model made {'them' if len(names) > 1 else 'it'}"
                 f" or changes {'them' if len(names) > 1 else 'it'}.{carried}")
        function = "torch.model"
    elif not share_init:
        cause = (f"the initial weights differ before step 0 ({join_names(names)}): the torch side keeps its own "
                 "initialisation (share_init=False) while NumPy draws its own; give both sides the same start.")
        function = "init"
    else:
        cause = (f"the initial weights differ before step 0 ({join_names(names)}) although both should start from "
                 "init(): the mapping's layout does not carry them across unchanged.")
        function = "mapping"
    return [Finding(rule="init", cause=cause, evidence=tuple(evidence), confidence=0.95, step=0,
                    tensor=differing[0], side="both", function=function, tensors=tuple(differing))]


def describe_values(values: np.ndarray) -> str:
    """Range and spread of weights, and the initialiser they look like."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return "empty"
    lo, hi, mean = float(v.min()), float(v.max()), float(v.mean())
    text = f"min {num(lo)}, max {num(hi)}, mean {num(mean)}"
    guess = _initialiser(v, np.shape(values))
    return text + (f" — {guess}" if guess else "")


def _initialiser(v: np.ndarray, shape: tuple[int, ...]) -> str:
    if not np.any(v):
        return "all zero"
    lo, hi = float(v.min()), float(v.max())
    if lo >= 0 and hi < 1 and v.size >= 4:
        return "all in [0, 1), like np.random.rand"
    bound = float(np.max(np.abs(v)))
    for fan_in in sorted(set(shape)):
        if fan_in > 0 and bound <= 1 / np.sqrt(fan_in) and lo < 0 < hi:
            return f"within ±1/√{fan_in} = ±{num(1 / np.sqrt(fan_in))}, like nn.Linear's default (kaiming-uniform)"
    if v.size >= 16 and abs(float(v.mean())) < 0.5 and 0.6 < float(v.std()) < 1.4:
        return "mean ≈ 0, std ≈ 1, like np.random.randn"
    return ""


# ---- layout: the same values after a transpose or a permutation -------------------


def layout_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    out = []
    for key in view.diverged:
        phase = view.phase(key)
        if phase in ("input", "loss") or (phase == "before" and view.step != 0):
            continue
        pair = view.pair(key) if view.phase(key) != "before" else _direct_pair(view, key)
        relation = layout_relation(*pair) if pair is not None else None
        if relation is not None:
            out.append(_layout_finding(view, key, relation))
    if not out and probe is not None:
        out += _mapping_transposed(view, probe)
    if not out and probe is not None:
        out += _backward_transposed(view, probe)
    return out


def _direct_pair(view: StepView, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    a, b = view.free_numpy.get(key), view.torch.get(key)
    if a is None or b is None or np.size(a) != np.size(b):
        return None
    return np.asarray(a), np.asarray(b).reshape(np.shape(a))


def layout_relation(a: np.ndarray | None, b: np.ndarray | None) -> str | None:
    """How ``a`` becomes ``b`` (same elements): ``"transposed"``, ``"axes permuted (1, 0, 2)"``,
    ``"rows permuted [...]"``, ``"the same values in another order"``; None if it does not.

    Linear in the elements (a sort of the rows' projections for a permutation of
    rows or columns; a sort of all values, the weakest reading, only below BIG).
    """
    if a is None or b is None:
        return None
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or a.size != b.size or arrays_close(a, b.reshape(a.shape), 1e-12):
        return None
    tol = agreement_tolerance(a, b)
    screen = _screen(a.size)
    for relation, candidate in _rearrangements(a):
        if candidate.size == b.size and _sample_close(candidate.reshape(b.shape), b, tol, screen) and \
                arrays_close(candidate.reshape(b.shape), b, tol):
            return relation
    if a.ndim == 2 and a.shape == b.shape:
        for axis, what in ((0, "rows"), (1, "columns")):
            order = _permutation(a, b, axis, tol)
            if order is not None:
                return f"with its {what} {_order_text(order)}"
    if a.size <= BIG and len(np.unique(a)) > 1 and arrays_close(np.sort(a.reshape(-1)), np.sort(b.reshape(-1)), tol):
        return "the same values in another order"
    return None


def _rearrangements(a: np.ndarray):
    if 2 <= a.ndim <= 4:
        for perm in itertools.permutations(range(a.ndim)):
            if perm != tuple(range(a.ndim)):
                yield ("transposed" if a.ndim == 2 else f"with its axes permuted {perm}"), np.transpose(a, perm)
    yield "read in Fortran (column-major) order", a.reshape(-1, order="F")


def _screen(size: int) -> np.ndarray | None:
    """Fixed positions to compare first in a big tensor: most candidates fail there, at no cost."""
    return np.random.default_rng(size).choice(size, 4096, replace=False) if size > BIG else None


def _sample_close(a: np.ndarray, b: np.ndarray, tol: float, screen: np.ndarray | None) -> bool:
    if screen is None:
        return True
    fa, fb = (x[np.unravel_index(screen, x.shape)] for x in (a, b))  # no copy of a transposed view
    scale = max(float(np.max(np.abs(fa), initial=0.0)), float(np.max(np.abs(fb), initial=0.0)))
    return bool(np.max(np.abs(fa - fb), initial=0.0) <= 2 * tol * scale)


def _permutation(a: np.ndarray, b: np.ndarray, axis: int, tol: float) -> list[int] | None:
    """The order of ``a``'s rows (axis 0) or columns (axis 1) that gives ``b``, if one does: rows matched by
    their projection on a fixed random direction, sorted, then checked whole."""
    a2, b2 = (a, b) if axis == 0 else (a.T, b.T)
    if a2.shape[0] < 2:
        return None
    direction = np.random.default_rng(0).standard_normal(a2.shape[1])
    pa, pb = a2 @ direction, b2 @ direction
    sa, sb = np.argsort(pa, kind="stable"), np.argsort(pb, kind="stable")
    if not arrays_close(pa[sa], pb[sb], tol * 10):
        return None  # the rows' projections are not the same multiset: no order of rows gives b
    order = np.empty(len(sa), dtype=np.int64)
    order[sb] = sa  # b's row i is a's row order[i]
    if np.array_equal(order, np.arange(len(order))) or not arrays_close(a2[order], b2, tol):
        return None
    return [int(i) for i in order]


def _order_text(order: list[int]) -> str:
    n = len(order)
    if order == list(range(n - 1, -1, -1)):
        return "in reverse order"
    if n <= 16:
        return f"taken in the order {order}"
    shift = (order[0]) % n
    if order == [(i + shift) % n for i in range(n)]:
        return f"rolled by {shift}"
    return "in another order"


def _layout_finding(view: StepView, key: str, relation: str) -> Finding:
    phase = view.phase(key)
    function = "mapping" if phase == "before" else function_for("numpy", phase)
    c = view.comparisons[key]
    cause = (f"{key}: the two sides hold the same values in a different layout — torch's equals NumPy's {relation}. "
             f"Either {function} produces it in that layout or the mapping's layout for {keys.base_name(key)} "
             "is wrong (e.g. SAME where torch stores (out, in) and NumPy (in, out)).")
    evidence = (worst_line(c), f"numpy {shape_text(c.numpy_shape)}, torch {shape_text(c.torch_shape)}: torch's "
                f"equals NumPy's {relation} to {num(agreement_tolerance(c.worst_numpy, c.worst_torch))} of its scale")
    loose = relation == "the same values in another order"
    return Finding(rule="layout", cause=cause, evidence=evidence, confidence=0.6 if loose else 0.9,
                   step=view.step, tensor=key, side="numpy" if phase not in ("before",) else "both",
                   function=function, tensors=(key,))


def _mapping_transposed(view: StepView, probe: Probe) -> list[Finding]:
    """A square weight used transposed: does torch's forward match NumPy's with it transposed?"""
    forward = view.diverged_in("forward")
    if not forward or any(k in view.diverged for k in (keys.before(w) for w in view.weights)):
        return []
    target = forward[0]
    mine = view.numpy.get(target)
    out = []
    replica = probe.torch_replica(view.step)
    for name in replica.runner.params:
        param = replica.runner.params[name]
        if param.ndim != 2 or param.shape[0] != param.shape[1] or param.shape[0] < 2:
            continue
        with _transposed(param):
            theirs = replica.step_outputs().get(target)
        if theirs is not None and mine is not None and np.size(theirs) == np.size(mine) and arrays_close(
                np.asarray(mine), np.asarray(theirs).reshape(np.shape(mine)), agreement_tolerance(mine) * 10):
            numpy_name = next((m.numpy for m in probe.scenario.mapping if name in m.torch_names), name)
            out.append(Finding(
                rule="layout", confidence=0.85, step=view.step, tensor=target, side="both", function="mapping",
                cause=(f"{target} differs, but with torch's {name} transposed torch's forward gives NumPy's {target}: "
                       f"the square weight {numpy_name} (torch {name}) is mapped in the wrong layout — torch stores "
                       "(out, in), a NumPy (in, out) weight needs TRANSPOSED — or one forward multiplies by its "
                       "transpose."),
                evidence=(worst_line(view.comparisons[target]),
                          f"float64 torch re-run with {name} transposed: {target} equals NumPy's"),
                tensors=(target,)))
    return out


def _backward_transposed(view: StepView, probe: Probe) -> list[Finding]:
    """A square weight used untransposed in the NumPy backward pass (``dz @ W`` for ``dz @ W.T``): the NumPy
    backward re-run in float64 with that weight transposed gives torch's gradients."""
    grads = view.diverged_in("grad")
    if not grads or view.diverged_in("forward", "loss"):
        return []
    rerun = NumpyRerun(probe, view.step)
    base, fresh = rerun.outputs(), probe.torch_fresh(view.step)
    differing = [k for k in grads if k in base and k in fresh and not _same64(base[k], fresh[k])]
    if not differing:
        return []
    for name, w in rerun.weights.items():
        if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] < 2 or np.array_equal(w, w.T):
            continue
        swapped = rerun.outputs(backward_weights={**rerun.weights, name: np.ascontiguousarray(w.T)})
        if swapped is None or all(_same64(swapped[k], base[k]) for k in differing):
            continue  # the control: a weight the gradients do not read says nothing
        if all(k in swapped and _same64(swapped[k], fresh[k]) for k in differing):
            return [_backward_layout_finding(view, probe, name, differing)]
    return []


def _backward_layout_finding(view: StepView, probe: Probe, name: str, differing: list[str]) -> Finding:
    torch_name = probe.torch_names(name)[0]
    after = [keys.after(keys.base_name(k)) for k in differing if keys.after(keys.base_name(k)) in view.diverged]
    cause = (f"numpy.backward uses the square weight {name} untransposed where the gradient needs {name}.T "
             f"(dh = dz @ {name} for dz @ {name}.T): with {name} transposed in the backward pass only, NumPy's "
             f"{join_names(differing)} equal torch's. A square weight cannot show the mistake by its shape.")
    evidence = (worst_line(view.comparisons[differing[0]]),
                f"NumPy's forward and backward re-run in float64 from torch's weights, {name} (torch {torch_name}) "
                f"transposed in numpy.backward only: {join_names(differing)} agree with torch's to 1e-9",
                f"the control: with {name} as it is they do not, and transposing it changes them")
    return Finding(rule="layout", cause=cause, evidence=evidence, confidence=0.93, step=view.step,
                   tensor=differing[0], side="numpy", function="numpy.backward", tensors=(*differing, *after))


def _same64(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.size == b.size and arrays_close(a.reshape(-1), b.reshape(-1), 1e-9)


class NumpyRerun:
    """NumPy's forward, loss and backward in float64 from torch's weights at a step; the backward may be given
    other weights than the forward."""

    def __init__(self, probe: Probe, step: int):
        record = probe.record(step)
        names = probe.engine.live.numpy_weight_names(record)
        start = {n: record.torch.get(keys.before(n), record.numpy[keys.before(n)]) for n in names}
        self.replica = NumpyReplica(probe.engine, record, start)
        self.weights = self.replica.weights

    def outputs(self, backward_weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray] | None:
        fns, hp, batch = self.replica.fns, self.replica.hp, self.replica.batch
        try:
            with rng_preserved(), np.errstate(all="ignore"):
                weights = {n: w.copy() for n, w in self.weights.items()}
                acts = dict(fns.forward(weights, batch, hp))
                out = {n: np.asarray(v) for n, v in acts.items()}
                out.update({n: np.asarray(v) for n, v in loss_dict(fns.call_loss(acts, batch, hp, weights)).items()})
                grads = fns.backward(backward_weights or weights, acts, batch, hp)
                out.update({keys.grad(n): np.asarray(g) for n, g in grads.items()})
        except Exception:  # the scenario's code on transposed weights may fail: then it says nothing
            return None
        return out


@contextmanager
def _transposed(param: torch.nn.Parameter) -> Iterator[None]:
    """``param`` holds its own transpose inside the block, its value again after."""
    original = param.detach().clone()
    with torch.no_grad():
        param.copy_(original.T)
    try:
        yield
    finally:
        with torch.no_grad():
            param.copy_(original)


# ---- shapes ------------------------------------------------------------------------


def shape_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    out = []
    for key in view.diverged:
        c = view.comparisons[key]
        if c.status != Status.SHAPE:
            continue
        out.append(_shape_finding(view, key, tuple(c.numpy_shape or ()), tuple(c.torch_shape or ())))
    return out


def broadcast_pair(big: tuple[int, ...], small: tuple[int, ...]) -> int | None:
    """n when ``big`` is (n, n) and ``small`` is (n,), (n, 1) or (1, n): a vector broadcast against a column."""
    if len(big) == 2 and big[0] == big[1] and big[0] > 1 and small in ((big[0],), (big[0], 1), (1, big[0])):
        return big[0]
    return None


def _shape_finding(view: StepView, key: str, numpy_shape: tuple[int, ...], torch_shape: tuple[int, ...]) -> Finding:
    phase = view.phase(key)
    big_side = "numpy" if int(np.prod(numpy_shape)) > int(np.prod(torch_shape)) else "torch"
    big, small = (numpy_shape, torch_shape) if big_side == "numpy" else (torch_shape, numpy_shape)
    n = broadcast_pair(big, small)
    evidence = (f"{key}: numpy {shape_text(numpy_shape)}, torch {shape_text(torch_shape)}",)
    if n is not None:
        cause = (f"{key} has shape {shape_text(big)} on the {big_side} side where the other has {shape_text(small)}: "
                 f"broadcasting an ({n},) array against an ({n}, 1) one makes an ({n}, {n}) table of every pair "
                 "instead of one value per sample (reshape one operand, or use the same shape on both).")
        return Finding(rule="shape", cause=cause, evidence=evidence, confidence=0.9, step=view.step, tensor=key,
                       side=big_side, function=function_for(big_side, phase), tensors=(key,),
                       values={"n": n})
    cause = f"{key} has different shapes on the two sides: {shape_text(numpy_shape)} against {shape_text(torch_shape)}."
    return Finding(rule="shape", cause=cause, evidence=evidence, confidence=0.7, step=view.step, tensor=key,
                   side=None, function=None, tensors=(key,))
