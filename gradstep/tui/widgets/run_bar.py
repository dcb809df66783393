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

    def relabel(self, what: str, stops: str | None = None) -> None:
        """A new label; ``stops``, new words on the stop key (``escape again stops it there``; "": none)."""
        if stops is not None:
            self._stop = stops
        stop = getattr(self, "_stop", "escape stops")
        self.query_one("#run-label", Label).update(Text(f"{what} — {stop} " if stop else f"{what} "))

    def advance(self, done: int, total: int) -> None:
        self.query_one(ProgressBar).update(total=total, progress=done)

    def stop(self) -> None:
        self.remove_class("-running")
