"""A numerically unstable formula: inf or NaN on one side only.

The first tensor, in compute order, that is non-finite on one side and finite
on the other is where it starts. Upstream on that side, a sigmoid output
saturated to exactly 0 or 1 makes log(p) or log(1 − p) infinite (the naive
binary cross-entropy), and an activation beyond log(max float) makes exp
overflow; torch's BCELoss clamps its log at −100 and BCEWithLogitsLoss works
from the logits, so torch stays finite.
"""

from __future__ import annotations

import numpy as np

from gradstep.diagnosis.findings import Finding, num
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import function_for, worst_line


def _nonfinite_count(a: object) -> int:
    arr = np.asarray(a)
    return int((~np.isfinite(arr)).sum()) if arr.dtype.kind == "f" else 0


def unstable_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    start = _first_one_sided_nonfinite(view)
    if start is None:
        return []
    key, side = start
    mine = view.numpy if side == "numpy" else view.torch
    other_side = "torch" if side == "numpy" else "numpy"
    theirs = view.torch if side == "numpy" else view.numpy
    clues = _clues(view, mine, key)
    phase = view.phase(key)
    cause = (f"a numerically unstable formula on the {side} side: {key} is inf/NaN there and finite on the "
             f"{other_side} side.")
    cause += " " + clues[0] if clues else ""
    if phase == "loss" and side == "numpy":
        cause += (" torch's BCELoss clamps its log at −100 and BCEWithLogitsLoss computes log-sigmoid from the "
                  "logits; write the NumPy loss from the logits the same way (np.logaddexp(0, z) − y·z), or clip p.")
    evidence = [worst_line(view.comparisons[key]) if key in view.comparisons else key,
                f"{side} {key}: {_nonfinite_count(mine[key])} non-finite of {np.size(mine[key])}; {other_side}: "
                f"{_nonfinite_count(theirs.get(key, np.zeros(0)))}"]
    evidence += clues[1:]
    return [Finding(rule="unstable", cause=cause, evidence=tuple(evidence), confidence=0.9 if clues else 0.7,
                    step=view.step, tensor=key, side=side, function=function_for(side, phase), tensors=(key,))]


def _first_one_sided_nonfinite(view: StepView) -> tuple[str, str] | None:
    for key in view.order:
        if view.phase(key) in ("input", "before"):
            continue
        a, b = view.numpy.get(key), view.torch.get(key)
        if a is None or b is None:
            continue
        na, nb = _nonfinite_count(a), _nonfinite_count(b)
        if na and not nb:
            return key, "numpy"
        if nb and not na:
            return key, "torch"
    return None


def _clues(view: StepView, tensors: dict, key: str) -> list[str]:
    """A saturated probability or an overflowing activation upstream of ``key``, as a sentence and numbers."""
    upstream = [k for k in view.order[: view.order.index(key)] if view.phase(k) == "forward" and k in tensors]
    for k in reversed(upstream):
        a = np.asarray(tensors[k])
        if a.dtype.kind != "f" or not a.size or not np.isfinite(a).all():
            continue
        if float(a.min()) >= 0.0 and float(a.max()) <= 1.0 and (np.any(a == 1.0) or np.any(a == 0.0)):
            ones, zeros = int((a == 1.0).sum()), int((a == 0.0).sum())
            logits = _largest_activation(view, tensors, upstream)
            lines = [f"{k}: {ones} elements exactly 1.0 and {zeros} exactly 0.0 in {a.dtype} — a saturated sigmoid"]
            if logits:
                lines.append(logits)
            return [f"{k} holds probabilities rounded to exactly 0 or 1, so log(p) or log(1 − p) is log(0) = −inf: "
                    "the naive binary cross-entropy −y·log(p) − (1 − y)·log(1 − p).", *lines]
    for k in upstream:
        a = np.asarray(tensors[k])
        if a.dtype.kind == "f" and a.size and np.isfinite(a).all():
            limit = float(np.log(np.finfo(a.dtype).max))
            if float(np.max(np.abs(a))) > limit:
                return [f"{k} reaches {num(float(np.max(np.abs(a))))}, past log(max {a.dtype}) = {num(limit)}: exp of "
                        "it overflows to inf.", f"{k}: largest |value| {num(float(np.max(np.abs(a))))}"]
    return []


def _largest_activation(view: StepView, tensors: dict, upstream: list[str]) -> str:
    best = None
    for k in upstream:
        a = np.asarray(tensors[k])
        if a.dtype.kind == "f" and a.size and np.isfinite(a).all():
            m = float(np.max(np.abs(a)))
            if best is None or m > best[1]:
                best = (k, m)
    return f"largest |activation| upstream: {best[0]} = {num(best[1])}" if best else ""
