"""Presentation mode's heading: the step in big digits beside the facts a room needs, one per line.

Textual cannot make the font bigger, so "large" is the step drawn in
three-line digits and a few bold, well-spaced lines; the stylesheet shows the
heading only under ``MainScreen.-present``.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Digits, Label, Static

from gradstep.compare import Status
from gradstep.tui import marks
from gradstep.tui.presentation import PresentView


class PresentHeading(Vertical):
    def compose(self) -> ComposeResult:
        with Horizontal(id="present-top"):
            with Vertical(id="present-step"):
                yield Label("step", id="present-step-label")
                yield Digits("-", id="present-digits")
            yield Static(id="present-facts")
        yield Static(id="present-finding")

    def show_view(self, view: PresentView, dark: bool = True) -> None:
        self.query_one(Digits).update(view.digits)
        self.query_one("#present-facts", Static).update(_facts(view, dark))
        finding = self.query_one("#present-finding", Static)
        finding.set_class(bool(view.finding), "-visible")
        finding.update(Text(view.finding, style="bold"))


def _facts(view: PresentView, dark: bool) -> Text:
    text = Text()
    text.append(view.context, style="dim")
    text.append("\n")
    if view.status is None:
        text.append("no tensor selected", style="italic")
    else:
        text.append(view.tensor, style="bold")
        text.append("   ")
        text.append_text(marks.badge(view.status, dark))
        if view.worst:
            text.append(f"   worst element {view.worst}")
    # The two values are what the room compares: bold, and red as well as marked when they disagree.
    value_style = marks.bad_style(dark) if view.status in (Status.DIVERGED, Status.NONFINITE) else "bold"
    for side, value in (("NumPy", view.numpy), ("torch", view.torch)):
        text.append(f"\n{side:<7}", style="bold")
        text.append(value, style=value_style)
    if view.difference:
        text.append(f"\n{'':<7}{view.difference}")
    text.append("\n")
    text.append(view.divergence, style="bold red" if view.diverged else "green")
    return text
