"""Run every rule on a step and rank what they find.

Ranking: a broadcast the sentinel saw build a table of every pair comes first
(its evidence is the shapes themselves, and a metric it corrupts is what the
user sees); then findings that explain a tensor diverging at the diagnosed step
come by that tensor's phase in compute order (initial weights, forward,
gradients, update; a loss value last, since alone it changes nothing in
training), then by confidence; then findings that show at later steps (an
accumulating gradient, a first NaN); then facts that explain nothing yet (a
dtype that changes, a broadcast in a metric).
"""

from __future__ import annotations

from collections.abc import Callable

from gradstep.diagnosis.budget import SECONDS, Budget
from gradstep.diagnosis.findings import Finding
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.replica import one_thread
from gradstep.diagnosis.rules.accumulation import accumulation_findings
from gradstep.diagnosis.rules.broadcast import broadcast_findings
from gradstep.diagnosis.rules.dtypes import (
    drift_findings,
    integer_findings,
    precision_findings,
    promotion_findings,
    tf32_findings,
)
from gradstep.diagnosis.rules.kinks import rounding_kink_findings
from gradstep.diagnosis.rules.located import locate
from gradstep.diagnosis.rules.nonfinite import unstable_findings
from gradstep.diagnosis.rules.ratios import ratio_findings
from gradstep.diagnosis.rules.reported import gradcheck_findings, metric_findings, reported_findings
from gradstep.diagnosis.rules.structure import (
    init_findings,
    layout_findings,
    one_side_findings,
    shape_findings,
)
from gradstep.diagnosis.rules.updates import penalty_findings, update_rule_findings
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import in_step_terms
from gradstep.engine import Engine

Rule = Callable[[StepView, Probe | None, list[Finding]], list[Finding]]

# Order matters only for rules that read earlier findings (reported, gradcheck: last).
RULES: tuple[Rule, ...] = (
    init_findings,
    layout_findings,
    one_side_findings,
    shape_findings,
    integer_findings,
    promotion_findings,
    precision_findings,
    rounding_kink_findings,
    drift_findings,
    tf32_findings,
    unstable_findings,
    ratio_findings,
    penalty_findings,
    accumulation_findings,
    update_rule_findings,
    broadcast_findings,
    reported_findings,
    gradcheck_findings,
    metric_findings,
)


class DiagnosisError(Exception):
    """A rule failed (raised only with ``strict=True``; otherwise the rule is skipped)."""


def diagnose(engine: Engine, step: int | None = None, *, strict: bool = False,
             seconds: float = SECONDS) -> list[Finding]:
    """Ranked findings at ``step``, or at the first divergence; [] when there is nothing to diagnose.

    Runs after a run, on the trace and on recomputed records: stepping is not
    slowed. An empty list at a divergence means no rule fits: nothing is guessed.
    ``seconds`` bounds the whole diagnosis; what it had to leave out is said in a
    last "not checked" finding.
    """
    if step is None:
        if engine.first_divergence is None:
            return []
        step = engine.first_divergence.step
    if not 0 <= step < engine.next_step:
        raise IndexError(f"step {step} has not been run (steps run: {engine.next_step})")
    probe = Probe(engine, Budget(seconds))
    with one_thread():
        view = probe.view(step)
        findings = run_rules(view, probe, strict=strict)
        findings = _located(view, probe, findings, strict)
        later = engine.first_nonfinite
        if later is not None and later != step and later < engine.next_step:
            findings += run_rules(probe.view(later), probe, rules=(unstable_findings,), strict=strict)
    step_sides = {side for side in ("numpy", "torch") if getattr(engine.scenario, side).step is not None}
    ranked = [in_step_terms(f, step_sides) for f in rank(findings, view)]
    return ranked + not_checked(probe.budget, view)


def _located(view: StepView, probe: Probe, findings: list[Finding], strict: bool) -> list[Finding]:
    try:
        return locate(view, probe, findings, probe.budget)
    except Exception as error:  # the localiser meeting code it cannot follow must not sink the rules' findings
        if strict:
            raise DiagnosisError(f"locate at step {view.step}: {type(error).__name__}: {error}") from error
        return findings


def not_checked(budget: Budget, view: StepView) -> list[Finding]:
    """What the diagnosis left out for its size or its time, as one finding ranked last."""
    if not budget.skipped:
        return []
    return [Finding(rule="not-checked", cause="not checked: too big or out of time — " + "; ".join(budget.skipped),
                    evidence=tuple(budget.skipped), confidence=0.0, step=view.step)]


def diagnose_view(view: StepView, rules: tuple[Rule, ...] = RULES, *, strict: bool = True) -> list[Finding]:
    """The rules that need no engine, on a hand-made view (see :func:`gradstep.diagnosis.view.synthetic_view`)."""
    return rank(run_rules(view, None, rules=rules, strict=strict), view)


def run_rules(view: StepView, probe: Probe | None, rules: tuple[Rule, ...] = RULES,
              strict: bool = False) -> list[Finding]:
    found: list[Finding] = []
    for rule in rules:
        try:
            found += rule(view, probe, list(found))
        except Exception as error:  # a rule meeting a scenario it cannot read must not sink the others
            if strict:
                raise DiagnosisError(f"{rule.__name__} at step {view.step}: {type(error).__name__}: {error}") from error
    return found


_FUNCTION_ORDER = {"forward": 0, "loss": 1, "backward": 2, "update": 3, "metrics": 4}


def rank(findings: list[Finding], view: StepView) -> list[Finding]:
    def key(f: Finding) -> tuple:
        if f.rule == "broadcast" or (f.rule == "shape" and "n" in f.values):
            # a table of every pair, seen being built: a bug wherever it is, the earliest function first
            return (-1, _FUNCTION_ORDER.get((f.function or "").partition(".")[2], 9), -f.confidence)
        here = [k for k in f.tensors if k in view.diverged] if f.step == view.step else []
        if here:
            return (0, min(view.rank(k) for k in here), -f.confidence)
        if f.step is not None and f.step != view.step and f.tensors:
            return (1, f.step, -f.confidence)
        return (2, 0, -f.confidence)

    unique = list({(f.rule, f.step, f.tensor, f.side, f.cause): f for f in findings}.values())
    return sorted(unique, key=key)
