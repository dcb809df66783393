"""Ask for a number: the step to go to, or how many steps to run."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.validation import Integer
from textual.widgets import Input, Label


class NumberPrompt(ModalScreen[int | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel", id="prompt_cancel")]

    def __init__(self, question: str, minimum: int, maximum: int, default: int | None = None) -> None:
        super().__init__()
        self.question, self.minimum, self.maximum, self.default = question, minimum, maximum, default

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"{self.question} ({self.minimum} to {self.maximum}; Enter, or Escape to cancel)")
            yield Input(
                value="" if self.default is None else str(self.default),
                type="integer",
                validators=[Integer(minimum=self.minimum, maximum=self.maximum)],
                id="prompt-input",
            )
            yield Label("", id="prompt-error")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        if event.validation_result is not None and not event.validation_result.is_valid:
            self.query_one("#prompt-error", Label).update(" ".join(event.validation_result.failure_descriptions))
            return
        self.dismiss(int(event.value))
