"""Never a wrong number on screen: every number the tensor view draws reads back as the value it shows, or is
marked ``…`` where it had to be cut, at every width (issue 16)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from textual.app import App, ComposeResult
from textual.geometry import Region

from gradstep.compare import tolerance_for
from gradstep.numfmt import CUT, fit, shortest
from gradstep.tui.grid_model import DiffMode, GridModel
from gradstep.tui.widgets import TensorGrid
from tests.test_tui_helpers import lines, run_async

NUMPY = np.array([[6.691775529261545e-09, -1.2345678901234567e+300, 0.059999999999999984],
                  [123456789.12345678, -0.18, 1e-300],
                  [5e-324, 2.2250738585072014e-308, -7.123456789012345e+15]])
TORCH = NUMPY * (1 + 3e-16) + np.array([[1e-20, 0, 0.12], [0, 1e-3, 0], [0, 0, 1e3]])
NUMBER = re.compile(r"^-?(\d[\d.]*|\.)(…)?(e[+-]\d+)?$")


class GridApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TensorGrid()


def test_fit_cuts_the_mantissa_keeps_the_exponent_and_marks_the_cut():
    assert fit("6.691775529261545e-09", 11) == "6.6917" + CUT + "e-09"
    assert fit("0.059999999999999984", 8) == "0.05999" + CUT
    assert fit("0.18", 8) == "0.18"
    assert fit("0x3dcccccd", 6) == "0x3dc" + CUT


def _check(token: str, shown_values: set[str]) -> None:
    """A whole number is one of the values exactly; a cut one is a marked prefix of one, exponent kept."""
    if CUT not in token:
        assert token in shown_values, token
        return
    head, _, exponent = token.partition(CUT)
    assert any(full.startswith(head) and full.endswith(exponent) for full in shown_values), token


@pytest.mark.parametrize("width", [80, 120, 160])
@pytest.mark.parametrize("mode", [DiffMode.ABS, DiffMode.REL])
@run_async
async def test_every_number_drawn_reads_back_or_is_marked_cut(width, mode):
    app = GridApp()
    async with app.run_test(size=(width, 12)) as pilot:
        grid = app.query_one(TensorGrid)
        model = GridModel("w", NUMPY, TORCH, tolerance_for(NUMPY.dtype, TORCH.dtype), mode=mode)
        values = {shortest(v) for v in (*NUMPY.ravel(), *TORCH.ravel())}
        diffs = np.abs(NUMPY - TORCH) if mode == DiffMode.ABS else None
        grid.show_model(model, cursor=(0, 0))
        await pilot.pause()
        drawn = lines(grid)
        assert all(len(line) <= width for line in drawn)
        seen, cut = 0, 0
        for line in [d for d in drawn[grid.header_lines:] if d.strip()]:  # under the titles (and column numbers)
            panes = line.split(" │ ")
            assert len(panes) == 3, line  # no pane runs over the right border
            for pane, text in enumerate(panes):
                if pane == 0:
                    text = text.strip().partition(" ")[2]  # the row number (folded: row,first column)
                tokens = [t for t in text.replace("✗", " ").split() if NUMBER.match(t)]
                for token in tokens:
                    seen += 1
                    cut += CUT in token
                    if pane < 2:
                        _check(token, values)
                    elif diffs is not None:
                        _check(token, {shortest(v) for v in diffs.ravel()})
        assert seen == 27  # every element of every pane: a 3 x 3 matrix that does not fit is folded
        if width == 80:
            assert cut, "at 80 columns these numbers cannot all be whole: the cut ones must be marked"


@pytest.mark.parametrize(("shape", "width", "folds"), [((1, 4), 80, 4), ((3, 5), 80, 5), ((3, 5), 160, 3),
                                                       ((1, 100), 80, 23), ((10, 100), 120, 1), ((64, 100), 120, 1)])
@run_async
async def test_a_small_matrix_that_does_not_fit_across_is_folded_so_every_column_shows(shape, width, folds):
    """A (1, 4) gradient at the tensor view's 80 columns: one column per pane fits across, so the row takes four
    lines, ``0,0`` to ``0,3``, every element drawn whole, the panes aligned; up and down go line by line. A row
    vector too long for that fills the lines there are; a matrix that would still be cut is not folded (its rows
    would interleave): it scrolls."""
    rng = np.random.default_rng(3)
    numpy = rng.standard_normal(shape) * 3
    torch = (numpy * 2).astype(np.float32)
    app = GridApp()
    async with app.run_test(size=(width, 24)) as pilot:
        grid = app.query_one(TensorGrid)
        grid.show_model(GridModel("g", numpy, torch, tolerance_for(numpy.dtype, torch.dtype)), cursor=(0, 0))
        await pilot.pause()
        g = grid._geometry()
        assert g.folds == folds
        if folds == 1:
            assert grid.header_lines == 2
            return
        drawn = [line for line in lines(grid)[grid.header_lines:] if line.strip()]
        assert len(drawn) == shape[0] * folds
        if g.span < shape[1]:  # a long row vector: as many columns as lines, from the cursor's
            assert [line.split()[0] for line in drawn] == [f"0,{c}" for c in range(folds)]
            return
        # every column of every row on screen
        numbers = {shortest(v) for v in numpy.ravel()} | {shortest(v) for v in torch.ravel()}
        elements = []
        separators = {tuple(i for i, c in enumerate(line) if c == "│") for line in drawn}
        assert len(separators) == 1, drawn  # a last line with fewer columns keeps the panes apart
        for line in drawn:
            label, _, rest = line.strip().partition(" ")
            row, first = map(int, label.split(","))
            values = [t for t in rest.split(" │ ")[0].replace("✗", " ").split()]
            assert all(v in numbers for v in values), line  # whole, never cut
            elements += [(row, first + k) for k in range(len(values))]
        assert sorted(elements) == [(r, c) for r in range(shape[0]) for c in range(shape[1])]
        await pilot.press("down")
        assert grid.cursor == (0, g.visible)  # the next line: the row's next columns
        await pilot.press("up", "up")
        assert grid.cursor == (0, 0)
        if shape[0] > 1:
            for _ in range(folds):
                await pilot.press("down")
            assert grid.cursor == (1, 0)  # past a row's last line, the next row


LINEAR2048 = str(__import__("pathlib").Path(__file__).parent / "fixtures" / "linear2048.py")


@run_async
async def test_a_big_tensor_opens_scrolled_to_its_cursor_and_the_list_to_its_entry():
    """2048 x 2048, one step: the cursor (the worst element, deep in the tensor) is on screen and drawn
    reversed, whatever the size; the tensor list, shown at 80x24, has the selected entry in view."""
    from gradstep.tui.widgets import TensorNavigator
    from tests.test_tui_helpers import make_app, press, settle, shown

    app = make_app(LINEAR2048, "fixed")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        grid = app.main.query_one(TensorGrid)
        row, col = grid.cursor
        assert app.main.selected == "after w" and row > 50  # the worst element, below the first screen
        for size in ((80, 24), (120, 40)):
            await pilot.resize_terminal(*size)
            await settle(pilot)
            top = round(grid.scroll_y)
            body = grid.scrollable_content_region.height - grid.header_lines
            assert top <= row < top + body, (size, top, row)
            geometry = grid._geometry()
            assert grid.col_offset <= col < grid.col_offset + geometry.visible
            drawn = lines(grid)[grid.header_lines + row - top]
            assert drawn.split()[0] == str(row)
        # "worst" says what it means, and W switches it to the list's Δ (largest |Δ|) and back.
        title = shown(app.main.query_one("#tensor-title"))
        assert "worst: most beyond tolerance" in title
        await press(pilot, "W")
        entry = app.frame.entry("after w")
        a, b = entry.numpy.astype(np.float64), entry.torch.astype(np.float64)
        largest = np.unravel_index(int(np.argmax(np.abs(a - b))), a.shape)
        assert grid.cursor == tuple(int(i) for i in largest)
        assert "worst: largest |Δ|" in shown(app.main.query_one("#tensor-title"))
        await press(pilot, "W")
        assert grid.cursor == (row, col)
        await pilot.resize_terminal(80, 24)
        await press(pilot, "end", "t")  # the list, at the bottom of which after w sits
        navigator = app.main.query_one(TensorNavigator)
        y = navigator.region_of("after w").y
        assert 0 <= y < navigator.size.height


def test_block_letters_cover_what_numbers_are_made_of():
    from gradstep.tui import bigtext

    for text in ("0.059999999999999984", "-1.2e-300", "nan", "-inf", "0x3dcccccd", "+7"):
        rows = bigtext.big(text)
        assert rows is not None and len(rows) == bigtext.HEIGHT
        assert {len("".join(row)) for row in rows} == {bigtext.width(text)}
    assert bigtext.big("w[0]") is None  # no glyph: the caller shows plain text


def _contrast(fg, bg) -> float:
    def luminance(color) -> float:
        def channel(c: float) -> float:
            c /= 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
        r, g, b = color
        return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)

    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@run_async
async def test_headers_phases_and_marks_are_readable_in_every_builtin_theme_and_without_colour():
    """Contrast of at least 3:1 (bold text) for the grid's headers and the list's phase names, and of 4.5:1 for
    every status mark and the out-of-tolerance values, against the background, in every theme Textual ships."""
    from rich.style import Style

    from gradstep.compare import Status
    from gradstep.tui import marks
    from gradstep.tui.widgets import ElementDetail, StatusBar, TensorNavigator
    from tests.test_tui_helpers import make_app, press, settle

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n")  # out of tolerance: marks, values and the verdict in the detail
        grid, navigator = app.main.query_one(TensorGrid), app.main.query_one(TensorNavigator)
        poor = []
        for name in sorted(app.available_themes):
            if name.startswith("ansi-") or name == "textual-ansi":
                continue  # the terminal's own colours: not ours to judge
            app.theme = name
            await pilot.pause()
            palette = marks.palette_of(app)
            verdicts = {"bad value": (grid._styles()["tensor-grid--bad"].color, 4.5),
                        "within tolerance": (Style.parse(palette.good).color, 4.5)}
            verdicts |= {f"mark {marks.mark(s)}": (Style.parse(palette.style(s)).color, 4.5) for s in Status}
            checks = {grid: {"header": (grid.get_component_rich_style("tensor-grid--header").color, 3), **verdicts},
                      navigator: {"phase": (navigator.get_component_rich_style("tensor-navigator--phase").color, 3),
                                  **verdicts},
                      app.main.query_one(StatusBar): verdicts, app.main.query_one(ElementDetail): verdicts}
            for widget, colours in checks.items():
                background = widget.background_colors[1].rgb
                for what, (color, least) in colours.items():
                    ratio = _contrast(color.get_truecolor(), background)
                    if ratio < least:
                        poor.append(f"{name}: {what} on {type(widget).__name__} {ratio:.2f}")
        assert not poor, poor


@run_async
async def test_without_colour_what_is_out_of_tolerance_is_reversed_never_grey(monkeypatch):
    from gradstep.compare import Status
    from gradstep.tui import marks
    from gradstep.tui.widgets import ElementDetail, StatusBar, TensorNavigator
    from tests.test_tui_helpers import make_app, press, settle

    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        palette = marks.palette_of(app)
        assert palette.style(Status.DIVERGED) == palette.style(Status.NONFINITE) == palette.bad == "bold reverse"
        assert all("#" not in palette.style(s) for s in Status)
        assert app.main.query_one(TensorGrid)._styles()["tensor-grid--bad"].reverse

        def reversed_text(widget, words: str) -> bool:
            for strip in widget.render_lines(Region(0, 0, widget.outer_size.width, widget.outer_size.height)):
                for segment in strip:
                    if words in segment.text and segment.style is not None and segment.style.reverse:
                        return True
            return False

        assert reversed_text(app.main.query_one(ElementDetail), "✗ out of tolerance")
        assert reversed_text(app.main.query_one(StatusBar), "first divergence")
        assert reversed_text(app.main.query_one(TensorNavigator), "✗")
