"""A diagnosis as the app shows it: the ranked findings of one step, as text.

Nothing here touches Textual. The findings come from
:func:`gradstep.diagnosis.diagnose` on the engine worker; these views turn
them into lines for the diagnosis pane (a one-line summary per finding for the
list, the cause, where and evidence in full for the one highlighted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gradstep.diagnosis import Finding

SIDE_NAMES = {"numpy": "NumPy side", "torch": "torch side", "both": "both sides"}
# Confidence as a symbol too, so it reads without colour.
CONFIDENCE_MARKS = {"high": "●●●", "medium": "●●○", "low": "●○○"}


@dataclass(frozen=True)
class Diagnosis:
    """The findings at ``step``, best first, for the engine ``generation`` they were computed on."""

    generation: int
    step: int | None
    findings: tuple[Finding, ...]
    at_divergence: bool  # ``step`` is the first divergence
    auto: bool  # asked for by the app at the first divergence, not by the key
    error: str | None = None  # nothing to diagnose, or the diagnosis failed

    @property
    def nothing_fits(self) -> bool:
        return self.error is None and not self.findings


def diagnosis_title(diagnosis: Diagnosis | None, pending: int | None = None) -> str:
    """The pane's title line."""
    if pending is not None:
        return f"diagnosing step {pending}…"
    if diagnosis is None:
        return "diagnosis: no divergence so far"
    if diagnosis.error is not None:
        return "diagnosis"
    where = f"step {diagnosis.step}" + (", the first divergence" if diagnosis.at_divergence else "")
    if diagnosis.nothing_fits:
        return f"diagnosis · {where} · nothing fits"
    count = len(diagnosis.findings)
    return f"diagnosis · {where} · {count} finding{'s' if count != 1 else ''}, likeliest first"


def empty_text(diagnosis: Diagnosis | None, diagnose_key: str) -> str:
    """What the pane says when it has no finding to list."""
    if diagnosis is None:
        return (f"No divergence so far. When one is found it is diagnosed here; press {diagnose_key} to "
                "diagnose the step shown.")
    if diagnosis.error is not None:
        return diagnosis.error
    if diagnosis.at_divergence:
        return (f"Nothing fits: no rule explains the divergence at step {diagnosis.step}. gradstep does not "
                "guess; compare the tensors (> jumps to the next one out of tolerance).")
    return (f"Nothing fits at step {diagnosis.step}: no rule finds a cause here (with no divergence, "
            "there is nothing to explain).")


def where_text(finding: Finding) -> str:
    """``step 0 · grad w · NumPy side · numpy.backward``: the parts the finding knows."""
    parts = []
    if finding.step is not None:
        parts.append(f"step {finding.step}")
    if finding.tensor is not None:
        parts.append(finding.tensor)
    if finding.side is not None:
        parts.append(SIDE_NAMES.get(finding.side, finding.side))
    if finding.function is not None:
        parts.append(finding.function)
    if finding.file and finding.line:
        parts.append(f"{Path(finding.file).name}:{finding.line}")
    return " · ".join(parts) or "the whole run"


def summary_text(rank: int, finding: Finding) -> str:
    """One line for the list: ``1. ●●● ratio · step 0 · grad w · numpy.backward`` (the side is in the detail)."""
    where = [f"step {finding.step}" if finding.step is not None else None, finding.tensor, finding.function]
    parts = [finding.rule, *(p for p in where if p is not None)]
    return f"{rank}. {CONFIDENCE_MARKS[finding.confidence_label]} {' · '.join(parts)}"


def detail_lines(finding: Finding) -> list[tuple[str, str]]:
    """The highlighted finding in full, as (kind, text): ``cause``, ``where``, ``evidence`` lines."""
    lines = [("cause", finding.cause)]
    lines.append(("where", f"where: {where_text(finding)}"))
    lines.append(("where", f"confidence: {finding.confidence_label} ({finding.confidence:.2f})"))
    others = [k for k in finding.tensors if k != finding.tensor]
    if others:
        lines.append(("where", f"also explains: {', '.join(others)}"))
    if finding.evidence:
        lines.append(("heading", "evidence:"))
        lines.extend(("evidence", f"• {line}") for line in finding.evidence)
    return lines


def evidence_target(finding: Finding, diagnosed_step: int | None) -> tuple[int | None, str | None]:
    """Where the evidence is: the finding's step (else the step diagnosed) and its tensor (else its first)."""
    step = finding.step if finding.step is not None else diagnosed_step
    tensor = finding.tensor or (finding.tensors[0] if finding.tensors else None)
    return step, tensor
