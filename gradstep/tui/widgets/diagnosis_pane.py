"""The diagnosis pane: the step's findings ranked, one line each, and the highlighted one in full.

Enter on a finding (``show_evidence``) asks to jump the view to its step and
tensor; a click does the same. The pane never runs the diagnosis: the app does,
on the engine worker, and hands it a :class:`~gradstep.tui.findings.Diagnosis`.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from gradstep.diagnosis import Finding
from gradstep.tui.findings import Diagnosis, detail_lines, diagnosis_title, empty_text, summary_text

_STYLES = {"cause": "bold", "where": "", "heading": "bold underline", "evidence": ""}


class FindingList(OptionList):
    """The findings, best first; Enter jumps to the highlighted one's evidence."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "show_evidence", "Show evidence",
                tooltip="Jump the view to the highlighted finding's step and tensor", id="show_evidence"),
    ]

    class EvidenceWanted(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def action_show_evidence(self) -> None:
        if self.highlighted is not None:
            self.post_message(self.EvidenceWanted(self.highlighted))


class DiagnosisPane(Vertical):
    """Title, the list of findings, and the highlighted finding's cause, where and evidence."""

    class EvidenceWanted(Message):
        """Show ``finding``'s evidence (its step and tensor), found at ``step``."""

        def __init__(self, finding: Finding, step: int | None) -> None:
            super().__init__()
            self.finding, self.step = finding, step

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.diagnosis: Diagnosis | None = None
        self.pending: int | None = None
        self._key: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(diagnosis_title(None), id="diagnosis-title")
        yield FindingList(id="findings", markup=False)  # findings quote tensor names: text
        with VerticalScroll(id="finding-detail"):
            yield Static(id="finding-text")

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.diagnosis.findings if self.diagnosis is not None else ()

    def show_diagnosis(self, diagnosis: Diagnosis | None, pending: int | None, diagnose_key: str) -> None:
        """Show ``diagnosis`` (None: nothing diagnosed yet), or that step ``pending`` is being diagnosed."""
        same = diagnosis is self.diagnosis
        if same and pending == self.pending and diagnose_key == self._key and self.is_mounted:
            return
        self.diagnosis, self.pending, self._key = diagnosis, pending, diagnose_key
        title = Text(diagnosis_title(diagnosis, pending), no_wrap=True, overflow="ellipsis")
        self.query_one("#diagnosis-title", Static).update(title)
        findings = self.query_one(FindingList)
        self.set_class(not self.findings, "-empty")
        if not same:
            findings.set_options(Option(summary_text(i + 1, f)) for i, f in enumerate(self.findings))
            findings.highlighted = 0 if self.findings else None
        if self.findings:
            self._detail(findings.highlighted or 0)
        else:
            text = "…" if pending is not None else empty_text(diagnosis, diagnose_key)
            self.query_one("#finding-text", Static).update(Text(text, style="italic"))

    def _detail(self, index: int) -> None:
        finding = self.findings[index]
        text = Text()
        for i, (kind, line) in enumerate(detail_lines(finding)):
            if i:
                text.append("\n")
            text.append(line, style=_STYLES[kind])
        self.query_one("#finding-text", Static).update(text)
        self.query_one("#finding-detail").scroll_home(animate=False)

    @on(OptionList.OptionHighlighted, "#findings")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if 0 <= event.option_index < len(self.findings):
            self._detail(event.option_index)

    @on(OptionList.OptionSelected, "#findings")
    def _clicked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._want(event.option_index)

    @on(FindingList.EvidenceWanted)
    def _enter(self, event: FindingList.EvidenceWanted) -> None:
        event.stop()
        self._want(event.index)

    def _want(self, index: int) -> None:
        if 0 <= index < len(self.findings) and self.diagnosis is not None:
            self.post_message(self.EvidenceWanted(self.findings[index], self.diagnosis.step))

    def focus_findings(self) -> None:
        self.query_one(FindingList).focus()

    @property
    def has_findings_focus(self) -> bool:
        return self.query_one(FindingList).has_focus
