"""Find a tensor by name: type part of it, pick from the matches."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList


class FindScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel", id="find_cancel"),
        Binding("down", "move(1)", "Down", show=False, id="find_down"),
        Binding("up", "move(-1)", "Up", show=False, id="find_up"),
    ]

    def __init__(self, keys: list[str]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(id="find-dialog", classes="dialog"):
            yield Label("Find a tensor (part of its name; Enter opens, Escape cancels)")
            yield Input(placeholder="e.g. grad w1", id="find-input")
            yield OptionList(*self.keys, id="find-matches", markup=False)

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = 0 if self.keys else None

    def matches(self, text: str) -> list[str]:
        words = text.lower().split()
        return [k for k in self.keys if all(w in k.lower() for w in words)]

    @on(Input.Changed)
    def _filter(self, event: Input.Changed) -> None:
        options = self.query_one(OptionList)
        options.set_options(self.matches(event.value))
        options.highlighted = 0 if options.option_count else None

    def action_move(self, by: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            options.highlighted = ((options.highlighted or 0) + by) % options.option_count

    @on(Input.Submitted)
    def _submit(self) -> None:
        options = self.query_one(OptionList)
        option = options.highlighted_option
        self.dismiss(None if option is None else str(option.prompt))

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(str(event.option.prompt))
