"""Every binding, its keys (as remapped) and what it does."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gradstep.compare import Status
from gradstep.tui.marks import palette_of


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="help_close"),
    ]

    def __init__(self, sections: list[tuple[str, list[Binding]]], keymap: dict[str, str]) -> None:
        super().__init__()
        self.sections, self.keymap = sections, keymap

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static(self._table(), id="help-table")

    def _table(self) -> Table:
        table = Table(title="gradstep keys", title_justify="left", expand=True, box=None, padding=(0, 1))
        table.add_column("keys", no_wrap=True, style="bold")
        table.add_column("does")
        table.add_column("binding id", style="dim", no_wrap=True)
        for title, bindings in self.sections:
            table.add_row("", f"[b u]{title}[/]", "")
            for binding in bindings:
                keys = self.keymap.get(binding.id or "", binding.key)
                table.add_row(key_display(keys), binding.tooltip or binding.description, binding.id or "")
        colours = palette_of(self.app)
        legend = Text("  ").join(colours.badge(status) for status in Status)
        table.add_row("marks", legend, "")
        table.add_row("", "In the grid, ✗ (or ! for NaN/Inf) before an element: out of tolerance.", "")
        table.add_row("", "Remap keys by binding id in ~/.config/gradstep/keymap.toml or $GRADSTEP_KEYMAP "
                      "([keymap] step = \"j\").", "")
        table.add_row("", "Mouse: click a tensor or an element, scroll the grid; never needed.", "")
        return table

    def on_mount(self) -> None:
        self.query_one("#help-dialog").focus()


_NAMES = {
    "full_stop": ".", "comma": ",", "greater_than_sign": ">", "less_than_sign": "<", "slash": "/",
    "question_mark": "?", "left_square_bracket": "[", "right_square_bracket": "]", "space": "space",
}


def key_display(keys: str) -> str:
    """``full_stop,comma`` as ``. ,``: the keys as they are typed."""
    return " ".join(_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))
