"""Progress of a long run (or of a step that is slow to land), and how to stop it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar


class RunBar(Horizontal):
    def compose(self) -> ComposeResult:
        yield Label("", id="run-label")
        yield ProgressBar(total=None, show_eta=True, id="run-progress")

    def start(self, what: str, stop_key: str, stops: str = "stops") -> None:
        self._stop = f"{stop_key} {stops}"
        self.relabel(what)
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.add_class("-running")

    def relabel(self, what: str) -> None:
        self.query_one("#run-label", Label).update(Text(f"{what} — {getattr(self, '_stop', 'escape stops')} "))

    def advance(self, done: int, total: int) -> None:
        self.query_one(ProgressBar).update(total=total, progress=done)

    def stop(self) -> None:
        self.remove_class("-running")
