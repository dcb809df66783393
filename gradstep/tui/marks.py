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


def style(status: Status, dark: bool = True) -> str:
    return MARKS[status][1] if dark else _LIGHT[status]


def mark(status: Status) -> str:
    return MARKS[status][0]


def label(status: Status) -> str:
    return LABELS[status]


def badge(status: Status, dark: bool = True) -> Text:
    """``✗ diverged`` in its style."""
    return Text(f"{mark(status)} {label(status)}", style=style(status, dark))


def bad_style(dark: bool = True) -> str:
    """Out-of-tolerance elements in the grid: bold and red, and marked with a symbol by the caller."""
    return "bold red" if dark else "bold red3"


BAD_MARK = "✗"
NONFINITE_MARK = "!"
