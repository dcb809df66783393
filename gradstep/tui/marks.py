"""Status marks for the screen: a symbol always, a colour as well, readable on dark and light themes.

The symbols and labels are the report's (:data:`gradstep.report.MARKS`,
:data:`~gradstep.report.LABELS`). Colours are from the 16/256-colour palette,
so they survive an SSH terminal without truecolor, and the serious ones are
bold too; on a light background the pale ones are swapped for darker ones.
"""

from __future__ import annotations

from rich.text import Text

from gradstep.compare import Status
from gradstep.report import LABELS, MARKS

_LIGHT = {
    Status.OK: "green4",
    Status.DRIFT: "dark_orange3",
    Status.ROUNDING: "blue3",
    Status.ONE_SIDE: "dark_cyan",
    Status.SHAPE: "magenta3",
    Status.NONFINITE: "bold red3",
    Status.DIVERGED: "bold red3",
}


# Without colour (NO_COLOR), Textual turns every colour grey: a red ✗ becomes dark grey on near black. The
# serious statuses are reversed instead, the others bold or plain: the symbol says which.
_NO_COLOR = {
    Status.OK: "",
    Status.DRIFT: "bold",
    Status.ONE_SIDE: "",
    Status.SHAPE: "bold",
    Status.NONFINITE: "bold reverse",
    Status.DIVERGED: "bold reverse",
}


def style(status: Status, dark: bool = True, no_color: bool = False) -> str:
    if no_color:
        return _NO_COLOR.get(status, "bold")
    return MARKS[status][1] if dark else _LIGHT[status]


def mark(status: Status) -> str:
    return MARKS[status][0]


def label(status: Status) -> str:
    return LABELS[status]


def badge(status: Status, dark: bool = True, no_color: bool = False) -> Text:
    """``✗ diverged`` in its style."""
    return Text(f"{mark(status)} {label(status)}", style=style(status, dark, no_color))


def bad_style(dark: bool = True, no_color: bool = False) -> str:
    """Out-of-tolerance values: bold and red (reversed without colour), and marked with a symbol by the caller."""
    if no_color:
        return "bold reverse"
    return "bold red" if dark else "bold red3"


def divergence_style(diverged: bool, dark: bool = True, no_color: bool = False) -> str:
    """The status line's "first divergence": red when there is one, green when there is none."""
    if no_color:
        return "bold reverse" if diverged else "bold"
    if diverged:
        return bad_style(dark)
    return "green" if dark else "green4"


BAD_MARK = "✗"
NONFINITE_MARK = "!"
