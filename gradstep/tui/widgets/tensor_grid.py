"""The selected tensor as NumPy | torch | difference, element for element: a Line-API scroll view.

Only the rows and columns on screen are formatted (by the :class:`GridModel`,
tile by tile) and drawn; drawn lines are kept in an LRU cache of ``Strip``s
keyed by everything that changes them. The cursor is one element, shown
reversed in all three panes; horizontal scrolling moves all three panes by
whole columns together.

A small matrix whose columns do not fit side by side while its rows leave
the view's lines empty (a (1, 4) gradient at 120 columns showed one column
per pane) is *folded*: each row takes several lines, each line the next
columns of that row, labelled ``row,first column``, so that the whole matrix
shows; a row vector too long for that shows as many of its columns as the
view has lines.
"""

from __future__ import annotations

from dataclasses import dataclass
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

from gradstep.numfmt import fit
from gradstep.tui.grid_model import LABEL, Cell, GridModel
from gradstep.tui.marks import BAD_MARK, NONFINITE_MARK, palette_of

_SEP = " │ "
_MIN_CELL = 13
_MIN_CUT = 8  # the narrowest a cell gets when numbers must be cut: a mark, a digit, …, an exponent
_PAD, _SPACIOUS_PAD = 2, 6  # spaces a cell keeps beside its widest number; more in presentation mode


@dataclass
class _Pass:
    """What one redraw needs for every line."""

    width: int
    base: Style
    styles: dict[str, Style]
    geometry: _Geometry | None


@dataclass(frozen=True)
class _Geometry:
    label: int  # row-label width
    cells: tuple[int, int, int]  # NumPy, torch and difference cell widths, mark included
    visible: int  # columns shown per pane, on one line
    folds: int = 1  # lines per tensor row: more than one when a small matrix is folded

    @property
    def span(self) -> int:
        """Columns of a row on screen at once."""
        return self.visible * self.folds

    @property
    def header(self) -> int:
        """Lines above the elements: the panes' titles, and the column numbers unless folded (the labels say)."""
        return 2 if self.folds == 1 else 1


class TensorGrid(ScrollView, can_focus=True):
    """Three synchronised panes over one :class:`GridModel`, with an element cursor."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "tensor-grid--header",
        "tensor-grid--label",
        "tensor-grid--cursor",
        "tensor-grid--bad",
        "tensor-grid--missing",
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1, 0)", "Up", show=False, id="grid_up"),
        Binding("down,j", "cursor(1, 0)", "Down", show=False, id="grid_down"),
        Binding("left,h", "cursor(0, -1)", "Left", show=False, id="grid_left"),
        Binding("right,l", "cursor(0, 1)", "Right", show=False, id="grid_right"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="grid_page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="grid_page_down"),
        Binding("home", "edge(-1)", "First row", show=False, id="grid_first_row"),
        Binding("end", "edge(1)", "Last row", show=False, id="grid_last_row"),
        Binding("w", "worst", "Worst", show=False, tooltip="Put the cursor on the worst element", id="worst_element"),
    ]

    class CursorMoved(Message):
        """The element under the cursor changed (or the tensor did)."""

        def __init__(self, grid: TensorGrid) -> None:
            super().__init__()
            self.grid = grid

        @property
        def control(self) -> TensorGrid:
            return self.grid

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.model: GridModel | None = None
        self.cursor: tuple[int, int] = (0, 0)
        self.col_offset = 0
        self._lines: LRUCache[tuple, Strip] = LRUCache(1024)
        self._generation = -1
        self._pass: _Pass | None = None
        self.spacious = False

    # ---- feeding ---------------------------------------------------------------
    def show_model(self, model: GridModel | None, cursor: tuple[int, int] | None = None) -> None:
        """Show ``model`` with the cursor at ``cursor`` (default: the worst element)."""
        self.model = model
        self._lines.clear()
        self.col_offset = 0
        if model is None:
            self.virtual_size = Size(0, 0)
            self.refresh()
            self.post_message(self.CursorMoved(self))
            return
        row, col = cursor if cursor is not None else model.worst_cell()
        self.cursor = (min(row, max(model.rows - 1, 0)), min(col, max(model.cols - 1, 0)))
        self._sync()
        self._reveal_cursor(center=True)
        # Again once the new virtual size is laid out: until then scrolling is clamped to the old one, and a
        # cursor deep in a big tensor would be off screen.
        self.call_after_refresh(self._reveal_cursor, True)

    def set_spacious(self, spacious: bool) -> None:
        """Presentation mode: wider cells, so columns stay apart when read from the back of a room."""
        if spacious != self.spacious:
            self.spacious = spacious
            self._lines.clear()
            self._reveal_cursor()

    def model_changed(self) -> None:
        """The model's slice, hex or difference mode changed: redraw, keep the cursor in range."""
        if self.model is None:
            return
        row, col = self.cursor
        self.cursor = (min(row, max(self.model.rows - 1, 0)), min(col, max(self.model.cols - 1, 0)))
        self._sync()
        self._reveal_cursor()

    def _sync(self) -> None:
        self._lines.clear()
        self._size_content()
        self.refresh()
        self.post_message(self.CursorMoved(self))

    def _size_content(self) -> None:
        model = self.model
        if model is not None:
            g = self._geometry()
            height = model.rows * g.folds + self.header_lines
            if self.virtual_size.height != height:
                self.virtual_size = Size(0, height)  # a layout: only when the height changes

    @property
    def header_lines(self) -> int:
        if self.model is None or self.model.rank < 2:
            return 1
        return self._geometry().header

    # ---- geometry --------------------------------------------------------------
    def _geometry(self) -> _Geometry:
        model = self.model
        assert model is not None
        geometry = self._fitted(len(str(max(model.rows - 1, 0))) + 1)
        folds = self._folds(geometry.visible)
        if folds == 1:
            return geometry
        # Folded: the labels name the row and the line's first column, which may leave room for fewer columns.
        geometry = self._fitted(len(f"{model.rows - 1},{model.cols - 1}") + 1)
        return _Geometry(geometry.label, geometry.cells, geometry.visible, self._folds(geometry.visible))

    def _fitted(self, label: int) -> _Geometry:
        """Cells as wide as their widest number, as many columns as the width holds (at least one, cut if must)."""
        model = self.model
        assert model is not None
        pad = _SPACIOUS_PAD if self.spacious else _PAD
        cells = tuple(max(layout.width + pad, _MIN_CELL + (pane == 2)) for pane, layout in enumerate(model.layouts))
        avail = self.scrollable_content_region.width - label - 2 * len(_SEP)
        if sum(cells) + 3 > avail:  # not one column of each pane fits: narrower cells, cut numbers marked …
            cells = _shared(cells, avail - 3)
        per_column = sum(cells) + 3
        visible = max(1, min(model.cols, avail // per_column))
        return _Geometry(label, cells, visible)

    def _folds(self, visible: int) -> int:
        """Lines per row: one, or as many as it takes to show the columns that do not fit side by side, with
        every row on screen. Only where that shows the whole matrix, or the matrix is one row (its lines then
        read as a list): a matrix folded in two, rows interleaved and still cut, reads worse than it scrolls."""
        model = self.model
        assert model is not None
        if model.rank < 2 or model.cols <= visible or not model.rows:
            return 1
        needed = -(-model.cols // visible)
        room = (self.scrollable_content_region.height - 1) // model.rows  # one header line when folded
        if room < needed and model.rows > 1:
            return 1
        return max(1, min(needed, room))

    def _reveal_cursor(self, center: bool = False) -> None:
        """Scroll so the cursor is on screen (in the middle of it with ``center``)."""
        if self.model is None:
            return
        row, col = self.cursor
        g = self._geometry()
        if col < self.col_offset:
            self.col_offset = col
        elif col >= self.col_offset + g.span:
            self.col_offset = col - g.span + 1
        self.col_offset = max(0, min(self.col_offset, self.model.cols - g.span))
        line = row * g.folds + (col - self.col_offset) // g.visible
        body = max(1, self.scrollable_content_region.height - self.header_lines)
        top = round(self.scroll_y)
        if center:
            self.scroll_to(y=max(0, line - body // 2), animate=False, immediate=True)
        elif line < top:
            self.scroll_to(y=line, animate=False, immediate=True)
        elif line >= top + body:
            self.scroll_to(y=line - body + 1, animate=False, immediate=True)
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._lines.clear()
        self._size_content()  # folding follows the size
        self._reveal_cursor()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()

    # ---- moving --------------------------------------------------------------
    def move_to(self, row: int, col: int) -> None:
        if self.model is None:
            return
        self.cursor = (max(0, min(row, self.model.rows - 1)), max(0, min(col, self.model.cols - 1)))
        self._reveal_cursor()
        self.post_message(self.CursorMoved(self))

    def action_cursor(self, rows: int, cols: int) -> None:
        if rows and self.model is not None and self._geometry().folds > 1:
            self._line_step(rows)
            return
        self.move_to(self.cursor[0] + rows, self.cursor[1] + cols)

    def _line_step(self, by: int) -> None:
        """Folded: up and down go a line, through a row's columns and on to the next row, as drawn."""
        assert self.model is not None
        row, col = self.cursor
        visible, cols = self._geometry().visible, self.model.cols
        if 0 <= col + by * visible < cols:
            self.move_to(row, col + by * visible)
        elif 0 <= row + by < self.model.rows:
            last_line = (cols - 1) // visible * visible
            self.move_to(row + by, col % visible if by > 0 else min(last_line + col % visible, cols - 1))

    def action_page(self, direction: int) -> None:
        body = max(1, self.scrollable_content_region.height - self.header_lines)
        self.move_to(self.cursor[0] + direction * max(1, body // self._geometry().folds), self.cursor[1])

    def action_edge(self, direction: int) -> None:
        if self.model is not None:
            self.move_to(0 if direction < 0 else self.model.rows - 1, self.cursor[1])

    def action_worst(self) -> None:
        if self.model is not None:
            self.move_to(*self.model.worst_cell())

    def on_click(self, event: events.Click) -> None:
        if self.model is None:
            return
        g = self._geometry()
        row, part = divmod(round(self.scroll_y) + event.y - self.header_lines, g.folds)
        x = event.x - g.label
        for width in g.cells:
            pane = g.visible * (width + 1)
            if 0 <= x < pane:
                self.move_to(row, self.col_offset + part * g.visible + min(x // (width + 1), g.visible - 1))
                return
            x -= pane + len(_SEP)

    def on_mouse_scroll_right(self, event: events.MouseScrollRight) -> None:
        self._shift_columns(1)

    def on_mouse_scroll_left(self, event: events.MouseScrollLeft) -> None:
        self._shift_columns(-1)

    def _shift_columns(self, by: int) -> None:
        if self.model is not None:
            g = self._geometry()
            self.col_offset = max(0, min(self.col_offset + by, self.model.cols - g.span))
            self.refresh()

    # ---- drawing ---------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        """Work out the styles and the geometry once per redraw, not once per line."""
        self._pass = _Pass(
            width=self.scrollable_content_region.width,
            base=self.rich_style,
            styles=self._styles(),
            geometry=self._geometry() if self.model is not None else None,
        )
        try:
            return super().render_lines(crop)
        finally:
            self._pass = None

    def render_line(self, y: int) -> Strip:
        model = self.model
        p = self._pass
        width = p.width if p else self.scrollable_content_region.width
        if model is None or width <= 0:
            return Strip.blank(width, p.base if p else self.rich_style)
        if model.generation != self._generation:
            self._generation = model.generation
            self._lines.clear()
        g = p.geometry if p and p.geometry else self._geometry()
        header = g.header if model.rank >= 2 else 1
        if y < header:
            key = ("header", y, self.col_offset, width, g, model.generation)
            draw = self._header_line
            row, part = y, 0
        else:
            row, part = divmod(round(self.scroll_y) + y - header, g.folds)
            if row >= model.rows:
                return Strip.blank(width, p.base if p else self.rich_style)
            cursor_col = self.cursor[1] if row == self.cursor[0] else -1
            key = (row, part, cursor_col, self.col_offset, width, g, model.generation)
            draw = self._row_line
        strip = self._lines.get(key)
        if strip is None:
            strip = draw(row, part, g, width)
            if model.generation != self._generation:  # a tile widened a layout while drawing: redraw all
                self._generation = model.generation
                self._lines.clear()
                self.call_after_refresh(self.refresh)
            else:
                self._lines[key] = strip
        return strip

    def _columns(self, g: _Geometry, part: int = 0) -> range:
        """The columns on line ``part`` of a row (folded), or on its one line."""
        assert self.model is not None
        first = self.col_offset + part * g.visible
        return range(first, min(first + g.visible, self.model.cols))

    def _styles(self) -> dict[str, Style]:
        """The component styles, out-of-tolerance from the theme's palette: the ✗ looks the same everywhere."""
        styles = {name: self.get_component_rich_style(name) for name in self.COMPONENT_CLASSES}
        styles["tensor-grid--bad"] = Style.parse(palette_of(self.app).bad)
        return styles

    def _style(self, name: str) -> Style:
        return self._pass.styles[name] if self._pass else self._styles()[name]

    def _base(self) -> Style:
        return self._pass.base if self._pass else self.rich_style

    def _row_line(self, row: int, part: int, g: _Geometry, width: int) -> Strip:
        model = self.model
        assert model is not None
        base = self._base()
        label_style = base + self._style("tensor-grid--label")
        cursor_style = self._style("tensor-grid--cursor")
        bad_style = base + self._style("tensor-grid--bad")
        missing_style = base + self._style("tensor-grid--missing")
        columns = self._columns(g, part)
        label = "" if model.rank < 1 else f"{row},{columns.start}" if g.folds > 1 else str(row)
        segments = [Segment(label.rjust(g.label - 1) + " ", label_style)]
        cells = [(col, model.cell(row, col)) for col in columns]
        for pane, layout in enumerate(model.layouts):
            if pane:
                segments.append(Segment(_SEP, label_style))
            cell_width = g.cells[pane]
            for col, cell in cells:
                text = _cell_text(cell, pane, cell_width, layout.place)
                style = bad_style if cell.bad else base
                if _cell_value(cell, pane) is None:
                    style = missing_style
                if self.cursor == (row, col):
                    style = style + cursor_style
                segments.append(Segment(" ", base))
                segments.append(Segment(text, style))
            if len(cells) < g.visible:  # a folded row's last line: blank cells keep the panes apart
                segments.append(Segment(" " * ((g.visible - len(cells)) * (cell_width + 1)), base))
        return Strip(segments).adjust_cell_length(width, base)

    def _header_line(self, y: int, part: int, g: _Geometry, width: int) -> Strip:
        model = self.model
        assert model is not None
        base = self._base()
        header = base + self._style("tensor-grid--header")
        label_style = base + self._style("tensor-grid--label")
        cols = self._columns(g)
        segments = [Segment(" " * g.label, label_style)]
        titles = (_dtype_title("NumPy", model.numpy), _dtype_title("torch", model.torch), LABEL[model.mode])
        for pane, cell_width in enumerate(g.cells):
            if pane:
                segments.append(Segment(_SEP, label_style))
            pane_width = len(cols) * (cell_width + 1)
            if y == 0:
                segments.append(Segment(" " + titles[pane][: pane_width - 1].ljust(pane_width - 1), header))
            else:
                text = "".join(" " + str(c).rjust(cell_width) for c in cols)
                segments.append(Segment(text, label_style))
        return Strip(segments).adjust_cell_length(width, base)


def _shared(cells: tuple[int, ...], room: int) -> tuple[int, ...]:
    """Cell widths that fit ``room`` together: the narrow panes keep theirs, the rest share what is left."""
    out = list(cells)
    left, panes = room, sorted(range(len(cells)), key=cells.__getitem__)
    for n, pane in enumerate(panes):
        out[pane] = max(_MIN_CUT, min(cells[pane], left // (len(panes) - n)))
        left -= out[pane]
    return tuple(out)


def _cell_value(cell: Cell, pane: int) -> str | None:
    return (cell.numpy, cell.torch, cell.diff)[pane]


def _cell_text(cell: Cell, pane: int, width: int, place) -> str:
    """``✗ -1.25``: the mark (or a space), then the number with its decimal point on the pane's column."""
    value = _cell_value(cell, pane)
    if value is None:
        return "·".rjust(width)
    mark = (NONFINITE_MARK if cell.nonfinite else BAD_MARK) if cell.bad else " "
    placed = place(value)
    if len(placed) + 2 > width:  # a cell narrower than its number: cut, and marked as cut (numfmt.fit)
        placed = fit(value, width - 2)
    return (mark + " " + placed).rjust(width)


def _dtype_title(side: str, value) -> str:
    if value is None:
        return f"{side}: absent"
    return f"{side} {value.dtype.name}"
