"""Gradients that accumulate: torch's recorded gradient is the running sum of fresh ones.

For a few steps from the diagnosed one, the torch side's recorded gradient of
each weight is compared with a fresh float64 autograd gradient of torch.loss at
the same weights: when every step's recorded gradient is the previous step's
plus the fresh one (and not the fresh one alone), ``.grad`` is never zeroed.
"""

from __future__ import annotations

import numpy as np

from gradstep import keys
from gradstep.diagnosis.findings import Finding, num
from gradstep.diagnosis.numeric import agreement_tolerance, arrays_close
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import element

WINDOW = 5


def accumulation_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    if probe is None:
        return []
    steps = list(range(max(1, view.step), min(view.step + WINDOW, probe.steps_run)))
    if not steps:
        return []
    names = _weight_names(probe, steps[0])
    out = []
    for name in names:
        evidence = _accumulates(probe, name, steps, view.relative_noise())
        if evidence is not None:
            out.append(_finding(view, probe, name, *evidence))
    return out


def _weight_names(probe: Probe, step: int) -> list[str]:
    record = probe.record(step)
    return [keys.base_name(k) for k in record.torch if k.startswith("before ")]


def _accumulates(probe: Probe, name: str, steps: list[int], noise: float) -> tuple[int, list[str]] | None:
    """(first step where it shows, evidence) when torch's gradient of ``name`` is a running sum."""
    first_shown, evidence = None, []
    for step in steps:
        grads = _step_grads(probe, step, keys.grad(name))
        if grads is None:
            return None
        now, before, fresh = grads
        tol = max(10 * agreement_tolerance(now), noise)
        now64, before64 = np.asarray(now, dtype=np.float64), np.asarray(before, dtype=np.float64)
        if arrays_close(now64, fresh, tol):
            continue  # zeroed at this step
        if not arrays_close(now64 - before64, fresh, tol):
            return None
        if first_shown is None:
            first_shown, evidence = step, [_running_sum_line(step, keys.grad(name), now, before, fresh)]
    if first_shown is None:
        return None
    evidence.append(f"recorded = previous + fresh at every step from {first_shown} to {steps[-1]}")
    return first_shown, evidence


def _step_grads(probe: Probe, step: int, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """torch's recorded gradient at ``step`` and ``step - 1``, and a fresh float64 one at ``step``."""
    now, before = probe.record(step).torch.get(key), probe.record(step - 1).torch.get(key)
    fresh = probe.torch_fresh(step).get(key)
    if now is None or before is None or fresh is None or np.size(now) != np.size(fresh):
        return None
    return np.asarray(now), np.asarray(before), np.asarray(fresh, dtype=np.float64).reshape(np.shape(now))


def _running_sum_line(step: int, key: str, now: np.ndarray, before: np.ndarray, fresh: np.ndarray) -> str:
    i = int(np.argmax(np.abs(now.astype(np.float64) - fresh)))
    index = tuple(int(j) for j in np.unravel_index(i, now.shape)) if now.shape else None
    recorded, previous = now.reshape(-1)[i], before.reshape(-1)[i]
    return (f"step {step}, torch {element(key, index)}: recorded {num(recorded)}; previous step's {num(previous)}; "
            f"a fresh gradient of torch.loss at this step's weights (float64 autograd) {num(fresh.reshape(-1)[i])}: "
            f"recorded − previous = {num(recorded - previous)}")


def _finding(view: StepView, probe: Probe, name: str, first_step: int, evidence: list[str]) -> Finding:
    torch_names = probe.torch_names(name)
    shown = ", ".join(f"{t}.grad" for t in torch_names)
    function = probe.torch_zeroing_function()
    cause = (f"torch's gradient of {name} accumulates: from step {first_step} on, the recorded gradient is the "
             f"running sum of every step's gradient, because {shown} is never zeroed (a missing zero_grad(), "
             f"or {torch_names[0]}.grad.zero_() left out in {function}). NumPy computes a fresh gradient each step.")
    return Finding(
        rule="accumulation", cause=cause, evidence=tuple(evidence), confidence=0.93, step=first_step,
        tensor=keys.grad(name), side="torch", function=function,
        tensors=(keys.grad(name), keys.after(name)), values={"first_step": first_step},
    )
