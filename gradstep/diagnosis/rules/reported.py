"""Reported values that differ while what trains agrees, and gradients no pattern explains.

A loss-dict entry other than the objective ("printed", "mse") only reports: it
can differ with no effect on training. A gradient that is not the derivative
of its side's own loss (finite differences) and that no other rule explains is
reported as such, with where the backward pass first parts from autograd when
the NumPy side also returns activation gradients.
"""

from __future__ import annotations

from gradstep import keys
from gradstep.diagnosis.findings import Finding, num
from gradstep.diagnosis.numeric import agreement_tolerance, constant_ratio
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.rules.ratios import gradcheck_line, readings
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import factor_text, join_names, times_text, worst_line


def reported_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    explained = {k for f in found for k in f.tensors}
    out = []
    for key in view.diverged_in("loss"):
        if key in explained:
            continue
        grads_agree = all(view.agrees(k) for k in view.order if view.phase(k) == "grad" and k in view.comparisons)
        if key != "loss":
            cause = (f"a reported value differs: {key} (a loss-dict entry that is only reported; neither side "
                     "differentiates it, so it changes nothing in training). The two sides compute different "
                     "quantities under the same name.")
        elif grads_agree:
            cause = ("the losses differ while every gradient agrees: the value reported as the loss is not the "
                     "objective the gradients come from on one side.")
        else:
            continue
        out.append(Finding(rule="reported", cause=cause, evidence=(worst_line(view.comparisons[key]),),
                           confidence=0.55, step=view.step, tensor=key, side="both", function=None, tensors=(key,)))
    return out


def gradcheck_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    if probe is None:
        return []
    covered = {(f.side, k) for f in found for k in f.tensors}
    out = []
    for side in ("numpy", "torch"):
        # torch's autograd is blamed only on overwhelming evidence (GradCheck.convicts); NumPy's on any difference
        bad = [c for c in probe.gradchecks(view.step) if c.side == side and (c.convicts if side == "torch"
                                                                              else c.differs)
               and keys.grad(c.weight) in view.diverged and (side, keys.grad(c.weight)) not in covered]
        if bad:
            out.append(_finding(view, side, bad))
    return out


def _finding(view: StepView, side: str, checks: list) -> Finding:
    names = [c.weight for c in checks]
    ratios = {factor_text(c.ratio) for c in checks if c.ratio is not None}
    values = {}
    if len(ratios) == 1 and all(c.ratio is not None for c in checks):
        r = checks[0].ratio
        meaning, snapped = readings(r, view)
        values["ratio"] = snapped if snapped is not None else r
        cause = (f"{side}'s gradient of {join_names(names)} is {times_text(values['ratio'])} the derivative of "
                 f"{side}.loss (finite differences)" + (": the factor reads as " + "; or ".join(meaning) if meaning
                                                         else "") + ".")
    else:
        cause = (f"{side}'s gradient of {join_names(names)} is not the derivative of {side}.loss (finite "
                 f"differences), and not by one constant factor: {side}.backward computes something else.")
    evidence = [gradcheck_line(c) for c in checks[:3]]
    where = first_departure(view) if side == "numpy" and not view.diverged_in("forward") else None
    if where:
        cause += " " + where
    tensors = [keys.grad(n) for n in names] + [keys.after(n) for n in names if keys.after(n) in view.diverged]
    return Finding(rule="gradcheck", cause=cause, evidence=tuple(evidence), confidence=0.85, step=view.step,
                   tensor=keys.grad(names[0]), side=side, function=f"{side}.backward" if side == "numpy" else
                   "torch.backward", tensors=tuple(tensors), values=values)


def first_departure(view: StepView) -> str | None:
    """The first activation gradient, in backward order, that no longer follows torch's (up to a constant)."""
    weights = set(view.weights) | set(view.torch_only)
    acts = [k for k in view.order if view.phase(k) == "forward"]
    previous = None
    for act in reversed(acts):
        key = keys.grad(act)
        pair = view.pair(key)
        if act in weights or pair is None:
            continue
        if view.agrees(key) or constant_ratio(*pair, agreement_tolerance(*pair)) is not None:
            previous = key
            continue
        after = f" (the one before, {previous}, still follows torch's up to a constant factor)" if previous else ""
        return (f"NumPy's backward first parts from autograd at {key}{after}: look at the line that computes "
                f"the gradient of {act}.")
    return None


def metric_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    """Epoch-end metrics that differ between the sides, from the first epoch where they do."""
    if probe is None:
        return []
    for m in probe.engine.trace.metrics:
        differing = [n for n in m.numpy if n in m.torch and _metric_differs(m.numpy[n], m.torch[n])]
        if differing:
            return [_metric_finding(m, differing, found)]
    return []


def _metric_differs(a: float, b: float) -> bool:
    a, b = float(a), float(b)
    return not (a == b or abs(a - b) <= 1e-3 * max(abs(a), abs(b)) + 1e-9)


def _metric_finding(m, differing: list[str], found: list[Finding]) -> Finding:
    broadcast = next((f for f in found if f.rule == "broadcast" and f.function == "numpy.metrics"), None)
    plural = len(differing) > 1
    cause = (f"the epoch-end metric{'s' if plural else ''} {join_names(differing)} differ{'' if plural else 's'} "
             "between the sides: they are "
             "computed by numpy.metrics and torch.metrics, outside the step, so compare those two functions as well "
             "as the training.")
    if broadcast is not None:
        cause += " numpy.metrics broadcasts (see the broadcast finding)."
    evidence = tuple(f"{n} at the end of epoch {m.epoch} (step {m.step}): numpy {num(m.numpy[n])}, torch "
                     f"{num(m.torch[n])}" for n in differing)
    return Finding(rule="metric", cause=cause, evidence=evidence, confidence=0.5, step=m.step, tensor=None,
                   side="both", function="numpy.metrics / torch.metrics", values={
                       f"{side} {n}": float(getattr(m, side)[n]) for n in differing for side in ("numpy", "torch")})
