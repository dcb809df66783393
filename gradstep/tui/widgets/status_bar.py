"""The status line: where the run is and how the two sides compare so far."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from gradstep.tui.marks import palette_of
from gradstep.tui.presenter import StatusView


class StatusBar(Static):
    """Two lines; three in the compact layout (its height comes from the stylesheet, so updates never re-layout)."""

    _shown: Text | None = None

    def show_status(self, view: StatusView, compact: bool = False) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        if view.read_only:  # first, so a narrow line never cuts it
            text.append(f"{view.read_only} · ", style="bold reverse")
        text.append(view.scenario, style="bold")
        text.append(f" · {view.position}", style="bold")
        text.append(f" · {view.where}")  # the device before the patches: a long list of patches is what is cut
        if not compact and view.patches:
            text.append(f" · {view.patches}", style="bold")
        text.append("\n")
        text.append(view.losses)
        text.append("\n" if compact else " · ")
        text.append(view.divergence, style=palette_of(self.app).divergence(view.diverged))
        if compact and view.patches:  # after the verdict, on its own line: the part the ellipsis may cut
            text.append(f" · {view.patches}", style="bold")
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)  # fixed height: repaint only


class ErrorBanner(Static):
    """An exception in the scenario's code: step, side, function, file:line, message."""

    _shown: str | None = None

    def show_error(self, message: str | None) -> None:
        if message == self._shown:
            return
        self._shown = message
        self.set_class(message is not None, "-visible")
        self.update(Text(message or "", style="bold"))
