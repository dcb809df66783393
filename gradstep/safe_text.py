"""Text that came from a file, made safe to print: no control character reaches the terminal raw.

A session file may come from anyone, and a scenario or patch file may carry
bytes its author never saw. Written raw, ``ESC ] 0 ; … BEL`` retitles the
window, ``ESC [ 2 J`` clears the screen, OSC 52 writes the clipboard, and the
bidirectional overrides make text read otherwise than it runs. Every string
from a file goes through :func:`printable` before it is shown: each such
character becomes its Python escape (``\\x1b``, ``\\u202e``), visible and
unambiguous. In source code that is also what the character means inside a
string literal, so an escaped patch compiles to the same strings.

:func:`shown` is the same for a value quoted in a message, cut short when long
(a 401-digit number is "a 401-digit number"). :class:`Printable` wraps a Rich
renderable so that all of its text, whatever part of the report it came from,
is made printable on its way out.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment

# C0 but tab and newline, DEL, C1, and the bidirectional marks, embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_UNSAFE_IN_A_LINE = re.compile(f"{_UNSAFE.pattern[:-1]}\t\n]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return {9: "\\t", 10: "\\n"}.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: Any, lines: bool = False) -> str:
    """``text`` with every control character escaped; ``lines``: keep newlines and tabs (source, paragraphs)."""
    text = str(text)
    return (_UNSAFE if lines else _UNSAFE_IN_A_LINE).sub(_escape, text)


def is_printable(text: str) -> bool:
    """Whether ``text`` is one line with no control character: what a tensor's name must be."""
    return _UNSAFE_IN_A_LINE.search(text) is None


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a message: printable, and cut short when long."""
    try:
        text = printable(repr(value))
    except ValueError:  # an int past Python's 4300-digit limit for str()
        return "a number of more than 4300 digits"
    if isinstance(value, int) and len(text) > limit:
        return f"a {len(text.lstrip('-'))}-digit number"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


class Printable:
    """A Rich renderable whose text segments are made printable; Rich's own control sequences pass."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for segment in console.render(self.renderable, options):
            if segment.control or not _UNSAFE.search(segment.text):
                yield segment
            else:
                yield Segment(printable(segment.text, lines=True), segment.style)
