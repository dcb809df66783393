"""Rounding at a kink: a pre-activation within rounding of 0 that lands on opposite sides of it.

A ReLU (or max, abs, clip) switches on one side and off on the other when its
input is a rounding error away from the kink: float32 sums in another order
give 7.45e-09 on one side and exactly 0 on the other. The gradients then
differ by whole contributions, far past any tolerance, with no bug anywhere:
the float64 re-runs of both sides from the same weights agree. (A kink where
the float64 re-runs still differ is a convention, ``>= 0`` against ``> 0``:
:mod:`gradstep.diagnosis.rules.located` names it.)
"""

from __future__ import annotations

import numpy as np

from gradstep.diagnosis.findings import Finding, num
from gradstep.diagnosis.numeric import arrays_close
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import join_names, worst_line


def rounding_kink_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    diverged = view.diverged_in("grad", "after")
    if probe is None or not diverged or view.diverged_in("before", "input", "forward"):
        return []
    if not _float64_agrees(view, probe, diverged):
        return []
    for key in view.order:
        if view.phase(key) != "forward":
            continue
        flips = _flips(view, key)
        if flips is not None:
            return [_finding(view, key, diverged, *flips)]
    return []


def _float64_agrees(view: StepView, probe: Probe, keys: list[str]) -> bool:
    """Both sides re-run in float64 from torch's weights agree on every diverged gradient they both give."""
    try:
        mine, theirs = probe.numpy_float64(view.step), probe.torch_fresh(view.step)
    except Exception:  # the referee is optional evidence
        return False
    shared = [k for k in keys if k in mine and k in theirs and np.size(mine[k]) == np.size(theirs[k])]
    return bool(shared) and all(arrays_close(np.asarray(mine[k]).reshape(-1), np.asarray(theirs[k]).reshape(-1),
                                             1e-9) for k in shared)


def _flips(view: StepView, key: str) -> tuple[int, tuple[int, ...], float, float] | None:
    """Elements of ``key`` within rounding of 0 whose sign differs between the sides: (count, first, values)."""
    pair = view.pair(key)
    if pair is None or pair[0].dtype.kind != "f":
        return None
    a, b = (np.asarray(x, dtype=np.float64) for x in pair)
    tolerance = view.comparisons[key].tolerance
    # Within the comparison's own tolerance of each other (they agree as values) yet on opposite sides of 0.
    near = np.abs(a - b) <= tolerance.atol + tolerance.rtol * np.abs(b)
    flipped = near & (np.sign(a) != np.sign(b))
    if not flipped.any():
        return None
    first = tuple(int(i) for i in np.argwhere(flipped)[0])
    return int(flipped.sum()), first, float(a[first]), float(b[first])


def _finding(view: StepView, key: str, diverged: list[str], count: int, first: tuple[int, ...], mine: float,
             theirs: float) -> Finding:
    elements = f"{count} elements within rounding of 0 that land" if count > 1 else \
        "an element within rounding of 0 that lands"
    cause = (f"rounding at a kink, not a bug: {key} has {elements} on opposite sides of it "
             f"({key}{list(first)}: NumPy {num(mine)}, torch {num(theirs)}), "
             f"so the ReLU (or max, abs, clip) after it is on for one side and off for the other and "
             f"{join_names(diverged)} differ by whole contributions. Re-run in float64 from the same weights, both "
             "sides agree.")
    evidence = (worst_line(view.comparisons[diverged[0]]),
                f"{key}{list(first)}: NumPy {num(mine)}, torch {num(theirs)} — equal within tolerance, on opposite "
                "sides of 0",
                f"both sides re-run in float64 from torch's weights: {join_names(diverged)} agree to 1e-9")
    return Finding(rule="kink", cause=cause, evidence=evidence, confidence=0.85, step=view.step, tensor=diverged[0],
                   side=None, function=None, tensors=tuple(diverged), values={"elements": float(count)})
