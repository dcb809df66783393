"""The tensor navigator: the step's tensors grouped by phase, each with its status mark, shape, worst difference.

A Line-API list (like the tensor grid): a step press only redraws the lines
whose text changed, from a cache of ``Strip``s, however many tensors a
scenario has. Up/down/home/end/page keys move the highlight over tensors
(phase headers are skipped), Enter opens, a click does both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gradstep import keys
from gradstep.tui.marks import Palette, mark, palette_of
from gradstep.tui.presenter import EntryView


@dataclass(frozen=True)
class _Line:
    key: str | None  # None: a phase header
    parts: tuple[tuple[str, str], ...]  # (text, rich style)


class TensorNavigator(ScrollView, can_focus=True):
    """One or two lines per tensor; ``highlighted`` is the key of the tensor under the highlight."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"tensor-navigator--highlight", "tensor-navigator--phase"}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False, id="tensors_up"),
        Binding("down,j", "move(1)", "Down", show=False, id="tensors_down"),
        Binding("home", "move(-10000)", "First", show=False, id="tensors_first"),
        Binding("end", "move(10000)", "Last", show=False, id="tensors_last"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="tensors_page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="tensors_page_down"),
        Binding("enter", "open", "Open", show=False, tooltip="Open the highlighted tensor", id="open_tensor"),
    ]

    class Highlighted(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class Opened(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._lines: list[_Line] = []
        self._first_line: dict[str, int] = {}
        self.keys_in_order: list[str] = []
        self.highlighted: str | None = None
        self._strips: LRUCache[tuple, Strip] = LRUCache(512)
        self._pass: tuple | None = None

    # ---- feeding -------------------------------------------------------------
    def show_entries(self, entries: Sequence[EntryView], selected: str | None) -> None:
        colours = palette_of(self.app)
        lines: list[_Line] = []
        for phase in keys.PHASES:
            group = [e for e in entries if e.phase == phase]
            if group:
                lines.append(_Line(None, ((f" {phase}", ""),)))
                for entry in group:
                    lines.extend(_entry_lines(entry, colours))
        if lines != self._lines:
            self._lines = lines
            self._first_line = {}
            for i, line in enumerate(lines):
                if line.key is not None:
                    self._first_line.setdefault(line.key, i)
            self.keys_in_order = list(self._first_line)
            if self.virtual_size.height != len(lines):
                self.virtual_size = Size(0, len(lines))  # a layout: only when the list grows or shrinks
            self.refresh()
        self.select_key(selected)

    def select_key(self, key: str | None) -> None:
        """Highlight ``key`` (no message: the caller already knows)."""
        if key is None or key not in self._first_line or key == self.highlighted:
            return
        self.highlighted = key
        self._reveal()
        self.call_after_refresh(self._reveal)  # once a list that grew is laid out
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._reveal()  # shown again (compact: t), or resized: the highlight stays in view

    def _reveal(self) -> None:
        if self.highlighted is None:
            return
        first = self._first_line[self.highlighted]
        last = first + sum(1 for line in self._lines[first:first + 2] if line.key == self.highlighted) - 1
        height = max(1, self.scrollable_content_region.height)
        top = round(self.scroll_y)
        if first < top:
            self.scroll_to(y=max(0, first - 1), animate=False, immediate=True)
        elif last >= top + height:
            self.scroll_to(y=last - height + 1, animate=False, immediate=True)

    # ---- moving ------------------------------------------------------------------
    def _move_to(self, key: str) -> None:
        if key != self.highlighted:
            self.select_key(key)
            self.post_message(self.Highlighted(key))

    def action_move(self, by: int) -> None:
        order = self.keys_in_order
        if not order:
            return
        here = order.index(self.highlighted) if self.highlighted in order else 0
        self._move_to(order[max(0, min(len(order) - 1, here + by))])

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.scrollable_content_region.height // 2))

    def action_open(self) -> None:
        if self.highlighted is not None:
            self.post_message(self.Opened(self.highlighted))

    def on_click(self, event: events.Click) -> None:
        index = round(self.scroll_y) + event.y
        if 0 <= index < len(self._lines) and self._lines[index].key is not None:
            key = self._lines[index].key
            self._move_to(key)
            self.post_message(self.Opened(key))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    # ---- drawing -----------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        self._pass = (self.scrollable_content_region.width, self.rich_style,
                      self.get_component_rich_style("tensor-navigator--phase"),
                      self.get_component_rich_style("tensor-navigator--highlight"))
        try:
            return super().render_lines(crop)
        finally:
            self._pass = None

    def render_line(self, y: int) -> Strip:
        width, base, phase_style, lit_style = self._pass or (
            self.scrollable_content_region.width, self.rich_style,
            self.get_component_rich_style("tensor-navigator--phase"),
            self.get_component_rich_style("tensor-navigator--highlight"))
        index = round(self.scroll_y) + y
        if not 0 <= index < len(self._lines):
            return Strip.blank(width, base)
        line = self._lines[index]
        lit = line.key is not None and line.key == self.highlighted
        cache_key = (line, lit, width)
        strip = self._strips.get(cache_key)
        if strip is None:
            extra = phase_style if line.key is None else lit_style if lit else Style()
            segments = [Segment(text, base + _parse(part_style) + extra) for text, part_style in line.parts]
            strip = Strip(segments).adjust_cell_length(width, base + extra)
            self._strips[cache_key] = strip
        return strip

    def region_of(self, key: str) -> Region:
        """Where ``key``'s first line is, in the widget (for tests and the mouse)."""
        return Region(0, self._first_line[key] - round(self.scroll_y), self.size.width, 1)


@lru_cache(maxsize=64)
def _parse(style_text: str) -> Style:
    return Style.parse(style_text)


def _entry_lines(entry: EntryView, colours: Palette) -> list[_Line]:
    head = (
        (" ", ""),
        (f"{mark(entry.status)} ", colours.style(entry.status)),
        (entry.key, "bold" if entry.out_of_tolerance else ""),
        (f" {entry.shape}", "dim"),
    )
    lines = [_Line(entry.key, head)]
    if entry.worst:
        lines.append(_Line(entry.key, (("     Δ ", "dim"), (entry.worst, "dim"))))
    elif entry.note:
        lines.append(_Line(entry.key, (("     ", ""), (entry.note, "dim italic"))))
    return lines
