"""Dtypes: float32 against float64 rounding, TF32 matmuls, a dtype that changes, integers.

A difference at float32's rounding level, on a pair where one side is float32,
is precision, not a bug, when a float64 re-run (the referee) of that side agrees
with the other: torch re-run in float64 from its own weights, or NumPy re-run
in float64 when NumPy is the float32 side. TF32 (CUDA matmuls with a 10-bit
mantissa) shows as relative differences near 1e-3 in forward activations with
the weights and inputs equal; it cannot run here, so the rule reads a view and
can be fed synthetic comparisons.
"""

from __future__ import annotations

import numpy as np

from gradstep import keys
from gradstep.compare import Status
from gradstep.diagnosis.findings import Finding, num
from gradstep.diagnosis.numeric import arrays_close
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import function_for, join_names, worst_line

FLOAT32_EPS = float(np.finfo(np.float32).eps)
SMALL_REL = 1e-3  # larger relative differences are not rounding


def _dtype(a: object) -> np.dtype:
    return np.asarray(a).dtype


def rounded_copy(a: object, b: object) -> bool:
    """Is one of the two exactly the other rounded to its (lower) precision, as a shared init cast to float32?"""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind != "f" or b.dtype.kind != "f" or a.dtype == b.dtype or a.size != b.size:
        return False
    low, high = (a, b) if np.finfo(a.dtype).nmant < np.finfo(b.dtype).nmant else (b, a)
    return bool(np.array_equal(high.astype(low.dtype).reshape(-1), low.reshape(-1)))


def _small_keys(view: StepView) -> tuple[list[str], list[str]]:
    """Diverged keys at rounding level: (computed ones, initial weights that are an exact float32 copy)."""
    computed, cast = [], []
    for key in view.diverged:
        c = view.comparisons[key]
        if view.phase(key) in ("before", "input"):
            if rounded_copy(view.numpy[key], view.torch[key]):
                cast.append(key)
        elif not c.nonfinite and c.worst_index is not None and view.scaled_difference(key) < SMALL_REL:
            computed.append(key)
    return computed, cast


# ---- float32 against float64 ---------------------------------------------------------


def precision_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    computed, cast = _small_keys(view)
    small = computed + cast
    if not computed or len(small) < len(view.diverged):
        return []  # something diverges by more than rounding: not precision alone
    float32_side = _float32_side({(str(_dtype(view.numpy[k])), str(_dtype(view.torch[k]))) for k in small})
    if float32_side is None or (view.device.startswith("cuda") and view.tf32):
        return []
    refereed = _referee(view, probe, computed, float32_side) if probe is not None else None
    if refereed is not None and not refereed[0]:
        return []  # the float64 re-run disagrees too: more than precision
    worst = max(small, key=view.scaled_difference)
    rel = view.scaled_difference(worst)
    other = "NumPy" if float32_side == "torch" else "torch"
    cause = (f"precision, not a bug: {join_names(small)} differ only at float32's rounding level "
             f"(the {float32_side} side computes in float32, {other} in float64); the tolerance in force is "
             "tighter than float32 can meet." + (" A float64 re-run agrees with the other side." if refereed else ""))
    evidence = _precision_evidence(view, probe, worst, cast, float32_side, refereed)
    return [Finding(rule="precision", cause=cause, evidence=evidence, confidence=0.9 if refereed else 0.6,
                    step=view.step, tensor=view.lead if view.lead in small else worst, side=float32_side,
                    function="dtype" if float32_side == "torch" else "init", tensors=tuple(small),
                    values={"max_rel": rel})]


def _precision_evidence(view: StepView, probe: Probe | None, worst: str, cast: list[str], float32_side: str,
                        refereed: tuple[bool, str] | None) -> tuple[str, ...]:
    rel = view.scaled_difference(worst)
    evidence = [worst_line(view.comparisons[worst]),
                f"largest difference {num(rel)} of the tensor's scale = {num(rel / FLOAT32_EPS)} × float32's "
                f"epsilon {num(FLOAT32_EPS)}"]
    if cast:
        evidence.append(f"{join_names(cast)}: the {float32_side} side holds the other's values rounded to float32, "
                        "exactly")
    if refereed is not None:
        evidence.append(refereed[1])
    if probe is not None:
        evidence += growth_lines(probe, worst, view.step)
    return tuple(evidence)


def _float32_side(dtypes: set[tuple[str, str]]) -> str | None:
    sides = {("torch" if t == "float32" else "numpy") for n, t in dtypes if "float32" in (n, t) and n != t}
    if len(sides) == 1:
        return sides.pop()
    if any(n == t == "float32" for n, t in dtypes):
        return "torch"
    return None


def _referee(view: StepView, probe: Probe, small: list[str], float32_side: str) -> tuple[bool, str] | None:
    """Does the float64 re-run of the float32 side agree with the other side on ``small``? None: no referee."""
    try:
        rerun = probe.torch_fresh(view.step) if float32_side == "torch" else probe.numpy_float64(view.step)
    except Exception:  # the referee is optional: a scenario that cannot run in float64 just goes without
        return None
    other = view.numpy if float32_side == "torch" else view.torch
    comparable = [k for k in small if k in rerun and k in other and np.size(rerun[k]) == np.size(other[k])]
    if not comparable:
        return None
    worst = 0.0
    for key in comparable:
        mine, theirs = rerun[key], other[key]
        a = np.asarray(mine, dtype=np.float64).reshape(np.shape(theirs))
        b = np.asarray(theirs, dtype=np.float64)
        scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
        worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)) / scale)
    agrees = worst <= 1e-9 if _dtype(other[comparable[0]]) == np.float64 else worst <= 16 * FLOAT32_EPS
    verdict = "agrees" if agrees else "does not agree"
    return agrees, (f"referee: the {float32_side} side re-run in float64 {verdict} with the other side on "
                    f"{join_names(comparable)} (largest difference {num(worst)} of the tensor's scale)")


def growth_lines(probe: Probe, key: str, step: int) -> list[str]:
    """How the free-running relative difference of ``key`` grew up to ``step``."""
    trace = probe.engine.trace
    if key not in trace.keys or trace.steps == 0:
        return []
    col = trace.keys.index(key)
    rel = trace.max_rel[: step + 1, col]
    marks = sorted({0, *(2**i for i in range(0, 40) if 2**i < len(rel)), len(rel) - 1})
    points = ", ".join(f"step {s}: {num(rel[s])}" for s in marks[-6:])
    return [f"free-running relative difference of {key}: {points}"]


# ---- TF32 -------------------------------------------------------------------------


def tf32_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    """TF32 matmuls on CUDA: forward tensors off by ~1e-3 relative while weights and inputs agree."""
    if not view.tf32_in_force:
        return []
    if any(view.phase(k) in ("before", "input") for k in view.diverged):
        return []
    forward = view.diverged_in("forward")
    if not forward:
        return []
    rels = [view.scaled_difference(k) for k in forward]
    if not all(1e-5 <= r <= 2e-2 for r in rels):
        return []
    cause = ("TF32: on CUDA, torch's float32 matmuls run in TF32 (a 10-bit mantissa), so matmul outputs differ "
             "from NumPy's by about 1e-3 relative with no bug. Re-run with --no-tf32 "
             "(torch.backends.cuda.matmul.allow_tf32 = False) to compare in true float32.")
    evidence = [worst_line(view.comparisons[k]) for k in forward[:3]]
    evidence.append(f"differences of {', '.join(num(r) for r in rels[:4])} of the tensors' scale: TF32's rounding "
                    f"is 2^-11 = {num(2.0**-11)} per operand; weights and inputs agree")
    return [Finding(rule="tf32", cause=cause, evidence=tuple(evidence), confidence=0.85, step=view.step,
                    tensor=forward[0], side="torch", function="torch.forward", tensors=tuple(forward),
                    values={"max_rel": max(rels)})]


# ---- a dtype that changes on one side ------------------------------------------------


def promotion_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    out = []
    for name in view.weights:
        before, after = view.free_numpy.get(keys.before(name)), view.free_numpy.get(keys.after(name))
        if before is None or after is None:
            continue
        start = _dtype(before)
        if probe is not None and view.step > 0:
            start = _dtype(probe.record(0).numpy.get(keys.before(name), before))
        end = _dtype(after)
        if start != end:
            out.append(_promotion_finding(view, name, start, end))
    return out


def _promotion_finding(view: StepView, name: str, start: np.dtype, end: np.dtype) -> Finding:
    torch_dtype = str(_dtype(view.torch[keys.after(name)])) if keys.after(name) in view.torch else view.torch_dtype
    if start.kind in "iub":
        why = (f"{name} starts as an integer array ({start}) — init gave integers where floats were meant — and "
               f"the update turns it into {end}.")
    else:
        why = (f"numpy.update silently changes {name} from {start} to {end}: NumPy's type promotion. A float64 "
               "operand (a np.float64 scalar, a float64 array, or, under NumPy 1.x value-based casting, a Python "
               "float times a 0-d float32) makes the result float64; NumPy 2 (NEP 50) keeps Python floats weak, "
               f"so the same code can stay float32. This NumPy is {np.__version__}.")
    explained = [k for k in (keys.after(name),) if k in view.diverged]
    return Finding(
        rule="promotion", cause=why,
        evidence=(f"numpy {name}: {start} before the update, {end} after; torch keeps {torch_dtype}",),
        confidence=0.8 if explained else 0.65, step=view.step, tensor=keys.after(name), side="numpy",
        function="numpy.update" if start.kind == "f" else "init", tensors=tuple(explained) or (keys.after(name),),
    )


# ---- integer arrays where floats were meant ------------------------------------------


def integer_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    out, covered = [], set()
    for key in view.order:
        phase = view.phase(key)
        mine, theirs = view.free_numpy.get(key), view.torch.get(key)
        if phase == "input" or key in covered or mine is None or _dtype(mine).kind not in "iub":
            continue
        if theirs is not None and _dtype(theirs).kind in "iub":
            continue
        # An integer initial weight stays integer through every in-place update: one cause, in init.
        later = [keys.after(keys.base_name(key))] if phase == "before" else []
        covered.update(later)
        out.append(_integer_finding(view, key, phase, _dtype(mine), theirs, later))
        if len(out) >= 3:
            break
    return out


def _integer_finding(view: StepView, key: str, phase: str, dtype: np.dtype, theirs: object,
                     later: list[str]) -> Finding:
    function = function_for("numpy", phase)
    other = f"torch has {_dtype(theirs)}" if theirs is not None else "torch has no such tensor"
    cause = (f"numpy {key} is an integer array ({dtype}) where floats were meant ({other}): values are truncated "
             f"to whole numbers. Look for np.zeros_like / np.empty_like of an integer array, an integer init, or "
             f".astype(int) in {function}.")
    explained = [k for k in [key, *later] if k in view.diverged or arrays_differ(view, k)]
    return Finding(rule="integer", cause=cause, evidence=(f"numpy {key}: dtype {dtype}; {other}",),
                   confidence=0.85 if explained else 0.55, step=view.step, tensor=key, side="numpy",
                   function=function, tensors=tuple(explained))


def arrays_differ(view: StepView, key: str) -> bool:
    pair = view.pair(key)
    return pair is not None and not arrays_close(*pair, 1e-6)


# ---- drift: out of tolerance free-running, within tolerance locally ----------------------


def drift_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    """On a step with no divergence, what the free-running differences are: accumulated rounding."""
    if probe is None or view.diverged:
        return []
    status = probe.engine.trace.step_status(view.step)
    drifting = [k for k in view.order if status.get(k) == Status.DRIFT]
    if not drifting:
        return []
    worst = max(drifting, key=lambda k: probe.engine.trace.max_rel[view.step, probe.engine.trace.keys.index(k)])
    dtypes = {str(_dtype(view.free_numpy[k])) for k in drifting if k in view.free_numpy}
    dtypes |= {str(_dtype(view.torch[k])) for k in drifting if k in view.torch}
    why = ("float32 rounding on one side against float64 on the other" if len(dtypes) > 1 else
           f"rounding in {join_names(sorted(dtypes))} (the two sides sum and multiply in different orders)")
    cause = (f"drift, not a bug: at step {view.step} {join_names(drifting)} are out of tolerance free-running but "
             f"within tolerance when both sides start the step from the same weights. The differences are {why}, "
             "accumulated over the steps (and amplified where the training is sensitive to its start).")
    return [Finding(rule="drift", cause=cause, evidence=tuple(growth_lines(probe, worst, view.step)), confidence=0.75,
                    step=view.step, tensor=worst, side=None, function=None, tensors=())]
