"""A constant ratio between the sides' gradients or losses, and what the ratio means.

2 is the squared error's derivative (``sum()/2`` against ``sum()``, or a dropped
``2*``); N, the batch size, is a sum against a mean; N*K is a sum against a mean
over every element of an (N, K) target; N/2 and 2N combine the two. The
finite-difference check says which side's gradient is not the derivative of its
own loss; when both are, the losses themselves differ by the factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradstep import keys
from gradstep.diagnosis.findings import Finding, num
from gradstep.diagnosis.gradcheck import GradCheck
from gradstep.diagnosis.numeric import agreement_tolerance, close, constant_ratio
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import element, factor_text, join_names, relation_text, worst_line


@dataclass
class RatioGroup:
    ratio: float  # numpy / torch
    keys: list[str]
    elements: int
    tolerance: float


def ratio_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    groups = ratio_groups(view, view.diverged_in("grad", "loss"))
    out = []
    for group in groups:
        finding = _group_finding(view, probe, group)
        if finding is not None:
            out.append(finding)
    return out


def ratio_groups(view: StepView, candidates: list[str]) -> list[RatioGroup]:
    """Diverged keys whose two sides are in one constant ratio, grouped by that ratio."""
    groups: list[RatioGroup] = []
    for key in candidates:
        pair = view.pair(key)
        if pair is None:
            continue
        tol = max(agreement_tolerance(*pair), view.relative_noise())
        r = constant_ratio(pair[0], pair[1], tol)
        if r is None or close(r, 1.0, tol):
            continue
        group = next((g for g in groups if close(g.ratio, r, max(tol, g.tolerance) * 10)), None)
        if group is None:
            groups.append(RatioGroup(r, [key], int(pair[0].size), tol))
        else:
            group.keys.append(key)
            group.elements += int(pair[0].size)
    return groups


def readings(r: float, view: StepView) -> tuple[list[str], float | None]:
    """What a factor ``r`` (either way round) usually means, given the batch's sizes, and ``r`` snapped to it."""
    n = view.batch_size
    candidates: list[tuple[float, str]] = [
        (2.0, "2, the squared error's derivative 2·(p − t): one side differentiates sum()/2 (or drops the 2), "
              "the other sum() or a mean of squares"),
    ]
    if n > 1:
        candidates += [
            (float(n), f"N = {n}, the batch size: a sum over the batch on one side, a mean on the other "
                       "(the 1/N applied on one side only)"),
            (n / 2, f"N/2 = {factor_text(n / 2)}: sum()/2 on one side, a mean over the N = {n} samples on the other"),
            (2.0 * n, f"2N = {2 * n}: a mean with the 2 of the derivative on one side, a sum without it on the other"),
        ]
    for total in view.target_sizes:
        if total > 1 and total != n:
            candidates += [
                (float(total), f"{total}, every element of the batch's {total}-element array: sum() on one side, "
                               "mean() over all elements on the other"),
                (total / 2, f"{factor_text(total / 2)} = {total}/2: sum()/2 on one side, mean() over all {total} "
                            "elements on the other"),
            ]
    a, tol = abs(r), max(1e-4, view.relative_noise())
    found, snapped = [], None
    for value, text in candidates:
        for exact in (value, 1.0 / value):
            if close(a, exact, tol):
                found.append(text)
                snapped = exact if r > 0 else -exact
    if r < 0 and close(a, 1.0, tol):
        found.append("-1: the sign is flipped, (t − p) on one side where the other has (p − t)")
        snapped = -1.0
    return list(dict.fromkeys(found)), snapped


def _group_finding(view: StepView, probe: Probe | None, group: RatioGroup) -> Finding | None:
    meaning, snapped = readings(group.ratio, view)
    r = snapped if snapped is not None else group.ratio
    if not meaning and group.elements < 2:
        return None  # one number in one ratio says nothing: do not guess
    grads = [k for k in group.keys if view.phase(k) == "grad"]
    weights = [keys.base_name(k) for k in grads if keys.base_name(k) in view.weights or
               keys.base_name(k) in view.torch_only]
    blame = _blame(view, probe, weights, r)
    loss_ratio = _loss_ratio(view)
    what = "gradients" if grads else "losses"
    across = "one element" if group.elements == 1 else f"{group.elements} elements"
    cause = f"{join_names(group.keys)}: {relation_text(r, what)}, one constant factor across {across}."
    if meaning:
        cause += " The factor reads as " + "; or ".join(meaning) + "."
    cause += " " + blame.sentence
    evidence = [worst_line(view.comparisons[k]) for k in group.keys[:4]]
    evidence.append(f"ratio numpy/torch {num(group.ratio)} (≈ {factor_text(r)}), the same for every element "
                    f"within {num(group.tolerance)} of the tensors' scale")
    if loss_ratio is not None and "loss" not in group.keys:
        evidence.append(f"losses: numpy/torch {num(loss_ratio)}")
    evidence += blame.evidence
    after = [keys.after(w) for w in weights if keys.after(w) in view.diverged]
    confidence = min(0.97, 0.6 + (0.2 if meaning else 0.0) + (0.1 if blame.side else 0.0)
                     + (0.05 if group.elements > 1 or len(group.keys) > 1 else 0.0))
    return Finding(
        rule="ratio", cause=cause, evidence=tuple(evidence), confidence=confidence, step=view.step,
        tensor=grads[0] if grads else group.keys[0], side=blame.side, function=blame.function,
        tensors=tuple(group.keys + after),
        values={"ratio": r, "measured_ratio": group.ratio, "reading": 1.0 if meaning else 0.0,
                **({"loss_ratio": loss_ratio} if loss_ratio else {})},
    )


@dataclass
class Blame:
    side: str | None
    function: str | None
    sentence: str
    evidence: list[str]


def _blame(view: StepView, probe: Probe | None, weights: list[str], r: float) -> Blame:
    """Which side's gradient is not the derivative of its own loss (finite differences)."""
    if probe is None or not weights:
        return Blame(None, None, "", [])
    checks = [c for w in weights for c in (probe.gradcheck_of(view.step, "numpy", w),
                                           probe.gradcheck_of(view.step, "torch", w)) if c is not None]
    numpy_bad = [c for c in checks if c.side == "numpy" and c.differs]
    torch_bad = [c for c in checks if c.side == "torch" and c.convicts]  # overwhelming evidence only
    numpy_ok = any(c.side == "numpy" and c.matches for c in checks)
    torch_ok = any(c.side == "torch" and c.matches for c in checks)
    evidence = [gradcheck_line(c) for c in (numpy_bad or torch_bad or checks)[:3]]
    if numpy_bad and torch_ok and not torch_bad:
        return Blame("numpy", "numpy.backward", "Finite differences say NumPy's gradient is the wrong one: "
                     "numpy.backward is not the derivative of numpy.loss" + _by(numpy_bad) + "; torch's is.", evidence)
    if torch_bad and numpy_ok and not numpy_bad:
        return Blame("torch", "torch.backward", "Finite differences say torch's gradient is the wrong one: it is "
                     "not the derivative of torch.loss" + _by(torch_bad) + "; NumPy's is.", evidence)
    if numpy_ok and torch_ok and not numpy_bad and not torch_bad:
        return Blame("both", "numpy.loss / torch.loss", "Both gradients are the true derivatives of their own "
                     f"losses (finite differences): the losses themselves differ — {relation_text(r, 'losses')}.",
                     evidence)
    return Blame(None, None, "", evidence)


def _by(checks: list[GradCheck]) -> str:
    ratios = {factor_text(c.ratio) for c in checks if c.ratio is not None}
    return f" (it gives {', '.join(sorted(ratios))}× the finite-difference derivative)" if ratios else ""


def gradcheck_line(c: GradCheck) -> str:
    verdict = {"matches": "matches", "differs": "does not match"}.get(c.verdict, "no verdict")
    ratio = f", ratio {num(c.ratio)}" if c.ratio is not None else ""
    undecided = []
    if c.kinks:
        undecided.append(f"{c.kinks} at a kink: no verdict from finite differences there")
    if c.unsettled:
        undecided.append(f"{c.unsettled} where two step sizes disagree")
    extra = f"; {', '.join(undecided)}" if undecided else ""
    given = f"{c.side} gives {num(c.given)}"
    if c.optimizer_decay:
        given += f" (its .grad plus the weight decay its optimizer adds, {num(c.optimizer_decay)}·{c.weight})"
    return (f"finite differences of {c.side}.loss at {element(c.weight, c.index)}: {num(c.finite_difference)}; "
            f"{given} — {verdict} ({c.checked} of {c.size} elements checked{ratio}{extra}; "
            "steps h and h/10 relative to each element, float64)")


def _loss_ratio(view: StepView) -> float | None:
    pair = view.pair("loss")
    if pair is None:
        return None
    a, b = (float(np.sum(np.asarray(x, dtype=np.float64))) for x in pair)
    return a / b if b != 0 and np.isfinite(a) and np.isfinite(b) else None
