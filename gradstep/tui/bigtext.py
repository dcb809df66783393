"""Numbers in big block letters, five rows high, for presentation mode: what a room reads off a projector.

Nothing here touches Textual. A terminal cannot enlarge its font, so the
numbers that matter are drawn with block characters, 4 columns a digit.
Only what numbers are made of has a glyph (digits, ``. - +``, the ``e`` of an
exponent, the letters of ``nan``, ``inf`` and hex); :func:`big` returns None
for anything else, and the caller shows the text as it is.
"""

from __future__ import annotations

HEIGHT = 5

_GLYPHS: dict[str, tuple[str, ...]] = {
    "0": (" ██ ", "█  █", "█  █", "█  █", " ██ "),
    "1": ("  █ ", " ██ ", "  █ ", "  █ ", " ███"),
    "2": ("███ ", "   █", " ██ ", "█   ", "████"),
    "3": ("███ ", "   █", " ██ ", "   █", "███ "),
    "4": ("█  █", "█  █", "████", "   █", "   █"),
    "5": ("████", "█   ", "███ ", "   █", "███ "),
    "6": (" ██ ", "█   ", "███ ", "█  █", " ██ "),
    "7": ("████", "   █", "  █ ", " █  ", " █  "),
    "8": (" ██ ", "█  █", " ██ ", "█  █", " ██ "),
    "9": (" ██ ", "█  █", " ███", "   █", " ██ "),
    ".": (" ", " ", " ", " ", "█"),
    "-": ("   ", "   ", "███", "   ", "   "),
    "+": ("   ", " █ ", "███", " █ ", "   "),
    "e": ("    ", " ██ ", "████", "█   ", " ███"),
    "n": ("    ", "    ", "███ ", "█  █", "█  █"),
    "a": ("    ", "███ ", "   █", "█  █", " ███"),
    "i": ("█", " ", "█", "█", "█"),
    "f": (" ██", "█  ", "███", "█  ", "█  "),
    "x": ("    ", "█  █", " ██ ", " ██ ", "█  █"),
    "b": ("█   ", "█   ", "███ ", "█  █", "███ "),
    "c": ("    ", " ███", "█   ", "█   ", " ███"),
    "d": ("   █", "   █", " ███", "█  █", " ███"),
    " ": ("  ", "  ", "  ", "  ", "  "),
}


def width(text: str) -> int | None:
    """Columns ``text`` takes in big letters (a space between glyphs), None if a character has no glyph."""
    if any(c not in _GLYPHS for c in text):
        return None
    return sum(len(_GLYPHS[c][0]) for c in text) + max(len(text) - 1, 0)


def big(text: str) -> list[list[str]] | None:
    """``text`` as HEIGHT rows, each a list of one piece per character (so a caller can style characters
    apart, e.g. the digits where two values part); None if a character has no glyph."""
    if width(text) is None:
        return None
    rows: list[list[str]] = [[] for _ in range(HEIGHT)]
    for i, char in enumerate(text):
        for r in range(HEIGHT):
            rows[r].append(_GLYPHS[char][r] + (" " if i < len(text) - 1 else ""))
    return rows
