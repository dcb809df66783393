"""Progress of a long run, and how to stop it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar


class RunBar(Horizontal):
    def compose(self) -> ComposeResult:
        yield Label("", id="run-label")
        yield ProgressBar(total=None, show_eta=True, id="run-progress")

    def start(self, what: str, stop_key: str) -> None:
        self.query_one("#run-label", Label).update(f"{what} — {stop_key} stops ")
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.add_class("-running")

    def advance(self, done: int, total: int) -> None:
        self.query_one(ProgressBar).update(total=total, progress=done)

    def stop(self) -> None:
        self.remove_class("-running")
