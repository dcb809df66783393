"""Presentation mode's heading: the step, the worst element's two values and their difference in big block
letters, the first finding centred and bold; the facts a room needs, one per line.

Textual cannot make the font bigger, so "large" is block letters
(:mod:`gradstep.tui.bigtext`) where the screen has room: both values and
their difference from 48 rows, the two values from 34; below that (and at
80x24) they are bold lines. Where two values part, the digits from there on
are marked (bold and red, or reversed without colour) so the room sees which
digits disagree. The stylesheet shows the heading only under
``MainScreen.-present``.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Static

from gradstep.compare import Status
from gradstep.tui import bigtext, marks
from gradstep.tui.presentation import PresentView

_LABEL = 8  # "NumPy", "torch", "|Δ|" and a gap, before a big value
ALL_BIG_ROWS, VALUES_BIG_ROWS = 48, 34


class PresentHeading(Vertical):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: PresentView | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="present-top"):
            with Vertical(id="present-step"):
                yield Label("step", id="present-step-label")
                yield Static(id="present-digits")
            yield Static(id="present-facts")
        yield Static(id="present-values")
        yield Static(id="present-finding")

    @property
    def step_text(self) -> str:
        return self.view.digits if self.view is not None else ""

    def show_view(self, view: PresentView) -> None:
        self.view = view
        self.draw()

    def on_resize(self) -> None:
        self.draw()

    def draw(self) -> None:
        view = self.view
        if view is None or not self.is_mounted:
            return
        width, height = self.app.size
        colours = marks.palette_of(self.app)
        big_values = 0 if self.screen.has_class("-compact") else 3 if height >= ALL_BIG_ROWS else \
            2 if height >= VALUES_BIG_ROWS else 0
        self.query_one("#present-digits", Static).update(_big_or_plain(view.digits, "bold", width // 3))
        self.query_one("#present-facts", Static).update(_facts(view, colours, plain=big_values == 0))
        values = self.query_one("#present-values", Static)
        values.set_class(big_values > 0, "-visible")
        if big_values:
            values.update(_values(view, colours, big_values, width - 6))
        finding = self.query_one("#present-finding", Static)
        finding.set_class(bool(view.finding), "-visible")
        finding.update(Text(view.finding, style="bold"))


def _big_or_plain(text: str, style: str, room: int) -> Text:
    rows = bigtext.big(text)
    if rows is None or (bigtext.width(text) or 0) > room:
        return Text(text, style=style)
    return Text("\n".join("".join(row) for row in rows), style=style)


def _parted(numpy: str, torch: str) -> int:
    """How many leading characters the two values share: the digits after that are the ones that disagree."""
    n = 0
    while n < min(len(numpy), len(torch)) and numpy[n] == torch[n]:
        n += 1
    return n


def _values(view: PresentView, colours: marks.Palette, count: int, room: int) -> Text:
    """NumPy, torch (and |Δ|) in block letters, the disagreeing digits marked; a bold line where one does not fit."""
    bad = view.status in (Status.DIVERGED, Status.NONFINITE)
    apart = colours.bad if bad else "bold"
    shared = _parted(view.numpy, view.torch) if bad else None
    lines = [("NumPy", view.numpy, shared), ("torch", view.torch, shared)]
    if view.abs:
        lines.append(("|Δ|", view.abs, None))
    text = Text(no_wrap=True, overflow="ellipsis")
    previous_big = False
    for i, (label, value, same) in enumerate(lines):
        is_big = i < count and (bigtext.width(value) or room + 1) + _LABEL <= room
        if i:
            text.append("\n\n" if is_big or previous_big else "\n")  # a blank row between block letters
        previous_big = is_big
        rows = bigtext.big(value) if is_big else None
        styles = [("bold" if same is None or k < same else apart) for k in range(len(value))]
        if rows is None:  # a bold line: the label, the value, the rest of the difference
            text.append(f"{label:<{_LABEL}}", style="bold")
            for char, style in zip(value, styles, strict=True):
                text.append(char, style=style)
            if label == "|Δ|" and view.rel:
                text.append(f"   rel {view.rel}")
            continue
        for r, row in enumerate(rows):
            middle = r == bigtext.HEIGHT // 2
            text.append(f"{label if middle else '':<{_LABEL}}", style="bold")
            for piece, style in zip(row, styles, strict=True):
                text.append(piece, style=style)
            if middle and label == "|Δ|" and view.rel:
                text.append(f"   rel {view.rel}")
            if r < bigtext.HEIGHT - 1:
                text.append("\n")
    if not view.abs and view.difference:  # why the elements do not pair up
        text.append(f"\n{'':<{_LABEL}}{view.difference}")
    return text


def _facts(view: PresentView, colours: marks.Palette, plain: bool) -> Text:
    text = Text()
    text.append(view.context, style="dim")
    text.append("\n")
    if view.status is None:
        text.append("no tensor selected", style="italic")
    else:
        text.append(view.tensor, style="bold")
        text.append("   ")
        text.append_text(colours.badge(view.status))
        if view.worst:
            text.append(f"   worst element {view.worst}")
    if plain:  # no room for block letters: the two values bold, marked when they disagree
        value_style = colours.bad if view.status in (Status.DIVERGED, Status.NONFINITE) else "bold"
        for side, value in (("NumPy", view.numpy), ("torch", view.torch)):
            text.append(f"\n{side:<7}", style="bold")
            text.append(value, style=value_style)
        if view.difference:
            text.append(f"\n{'':<7}{view.difference}")
    text.append("\n")
    text.append(view.divergence, style=colours.divergence(view.diverged))
    return text
