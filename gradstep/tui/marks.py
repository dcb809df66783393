"""Status marks for the screen: a symbol always, and a colour from the theme that is readable on it.

The symbols and labels are the report's (:data:`gradstep.report.MARKS`,
:data:`~gradstep.report.LABELS`). The colours are the theme's own text colours
(``$text-success`` for ``✓``, ``$text-error`` for ``✗``, ...), so they follow
dark and light themes; where a theme's colour falls short of
:data:`MIN_CONTRAST` against its background, surface or panel, it is blended
toward black or white until it reaches it. Textual downsamples them to 256
colours over SSH. A theme of the terminal's own colours (``textual-ansi``)
keeps the terminal's named colours: they are the terminal's to choose.

Without colour (``NO_COLOR``) Textual turns every colour grey: a red ``✗``
would be dark grey on near black. There the serious statuses are reversed,
the others bold or plain; the symbol says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from weakref import WeakKeyDictionary

from rich.text import Text
from textual.app import App
from textual.color import Color, ColorParseError

from gradstep.compare import Status
from gradstep.report import LABELS, MARKS

MIN_CONTRAST = 4.5  # WCAG's minimum for normal text
BAD_MARK = "✗"
NONFINITE_MARK = "!"

# The theme's text colour for each status (a mark's colour repeats what its symbol says).
_THEME_COLOUR = {
    Status.OK: "text-success",
    Status.DRIFT: "text-warning",
    Status.ROUNDING: "text-primary",
    Status.ONE_SIDE: "text-accent",
    Status.SHAPE: "text-secondary",
    Status.NONFINITE: "text-error",
    Status.DIVERGED: "text-error",
}
_SERIOUS = (Status.NONFINITE, Status.DIVERGED)
_NO_COLOR = {Status.OK: "", Status.ONE_SIDE: "", Status.NONFINITE: "bold reverse", Status.DIVERGED: "bold reverse"}


@dataclass(frozen=True)
class Palette:
    """The styles of one theme: each status's mark, values out of tolerance (``bad``) and within it (``good``)."""

    statuses: Mapping[Status, str]
    bad: str
    good: str
    lines: tuple[str, str, str] = ("", "", "")  # the loss plot's NumPy and torch lines and its step marker

    def style(self, status: Status) -> str:
        return self.statuses[status]

    def badge(self, status: Status) -> Text:
        """``✗ diverged`` in its style."""
        return Text(f"{mark(status)} {label(status)}", style=self.style(status))

    def divergence(self, diverged: bool) -> str:
        """The status line's "first divergence": the bad style when there is one, the good one when none."""
        return self.bad if diverged else self.good or "bold"


def palette(variables: Mapping[str, str], no_color: bool = False) -> Palette:
    """The palette of a theme, from its CSS variables (``App.get_css_variables()``)."""
    if no_color:
        # The plot's lines bright (its markers, • and +, tell them apart): a grey one vanishes on black.
        return Palette(_frozen({s: _NO_COLOR.get(s, "bold") for s in Status}), "bold reverse", "",
                       ("white", "white", "white"))
    backgrounds = [_colour(variables.get(name, "")) for name in ("background", "surface", "panel")]
    colours = {s: _colour(variables.get(name, "")) for s, name in _THEME_COLOUR.items()}
    if any(c is None for c in (*backgrounds, *colours.values())):  # the terminal's own colours: its choice
        return Palette(_frozen({s: MARKS[s][1] for s in Status}), "bold red", "green", ("blue", "yellow", "red"))
    readable = {s: _readable(c, backgrounds).hex for s, c in colours.items()}  # type: ignore[arg-type]
    styles = {s: f"bold {readable[s]}" if s in _SERIOUS else readable[s] for s in Status}
    lines = (readable[Status.ROUNDING], readable[Status.DRIFT], readable[Status.DIVERGED])  # primary, warning, error
    return Palette(_frozen(styles), f"bold {readable[Status.DIVERGED]}", readable[Status.OK], lines)


_made: WeakKeyDictionary[App, dict[tuple[str, bool], Palette]] = WeakKeyDictionary()


def palette_of(app: App) -> Palette:
    """The app's palette for its current theme (and ``NO_COLOR``), made once per theme."""
    made = _made.setdefault(app, {})
    key = (app.theme, app.no_color)
    if key not in made:
        made[key] = palette(app.get_css_variables(), app.no_color)
    return made[key]


def mark(status: Status) -> str:
    return MARKS[status][0]


def label(status: Status) -> str:
    return LABELS[status]


def contrast(a: Color, b: Color) -> float:
    """WCAG's contrast ratio of two colours, from 1 (the same) to 21 (black on white)."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _readable(colour: Color, backgrounds: list[Color]) -> Color:
    """``colour``, blended toward black or white just enough to stand out from every one of ``backgrounds``."""
    target = backgrounds[0].get_contrast_text(1.0)
    for step in range(11):
        blended = colour.blend(target, step / 10)
        if min(contrast(blended, bg) for bg in backgrounds) >= MIN_CONTRAST:
            return blended
    return target


def _luminance(colour: Color) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(colour.r) + 0.7152 * channel(colour.g) + 0.0722 * channel(colour.b)


def _colour(text: str) -> Color | None:
    """A theme colour as RGB; None for one of the terminal's own (``ansi_...``) or none at all."""
    try:
        colour = Color.parse(text)
    except ColorParseError:
        return None
    return None if colour.ansi is not None else colour.with_alpha(1.0)


def _frozen(styles: dict[Status, str]) -> Mapping[Status, str]:
    return MappingProxyType(styles)
