"""The debugger app driven through Textual's pilot: every binding pressed, the state and the screen checked."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from textual.widgets import Input

from gradstep.compare import Status
from gradstep.tui.bindings import DIAGNOSIS_BINDINGS, EDITOR_BINDINGS, ENGINE_BINDINGS, PATCH_BINDINGS, VIEW_BINDINGS
from gradstep.tui.frame import INITIAL
from gradstep.tui.grid_model import DiffMode
from gradstep.tui.screens import FindScreen, HelpScreen, NumberPrompt
from gradstep.tui.widgets import (
    ElementDetail,
    ErrorBanner,
    FindingList,
    LossPlot,
    StatusBar,
    TensorGrid,
    TensorNavigator,
)
from tests.test_tui_helpers import (
    BIG,
    CHAOS,
    FAULTS,
    lines,
    make_app,
    press,
    recorded_notes,
    run_async,
    settle,
    shown,
    type_text,
)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def widget(app, kind):
    return app.screen.query_one(kind)


def footer_text(app) -> str:
    from gradstep.tui.widgets import KeyFooter

    return shown(widget(app, KeyFooter))


async def find(pilot, name: str) -> None:
    await press(pilot, "slash")
    assert isinstance(pilot.app.screen, FindScreen)
    await type_text(pilot, name)
    await press(pilot, "enter")


# ---- opening and stepping -----------------------------------------------------------


@run_async
async def test_opens_on_the_initial_weights_before_any_update():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        assert app.frame.step == INITIAL and app.debugger.engine.next_step == 0
        assert [e.key for e in app.frame.entries] == ["before w", "before b"]
        status = shown(widget(app, StatusBar))
        assert "start (initial weights)" in status and "0/3 run" in status and "cpu float64" in status
        assert "✓ before w (1, 1)" in shown(widget(app, TensorNavigator))
        assert "NumPy 0.3  float64 0x3fd3333333333333" in shown(widget(app, ElementDetail))


@run_async
async def test_one_step_shows_step_zero_after_w_and_after_b():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        assert app.frame.step == 0 and app.debugger.engine.next_step == 1
        status = shown(widget(app, StatusBar))
        assert "step 0 (epoch 0, batch 0)" in status and "loss NumPy 1.44  torch 1.44" in status
        assert "✗ first divergence: step 0, grad w" in status
        navigator = shown(widget(app, TensorNavigator))
        for phase in ("before", "input", "forward", "loss", "grad", "after"):
            assert f" {phase} " in f" {navigator} "
        assert "✗ after w (1, 1)" in navigator and "Δ 0.12000000000000001" in navigator
        await find(pilot, "after w")
        assert app.main.selected == "after w"
        grid = shown(widget(app, TensorGrid))
        assert "✗ 0.18" in grid and "✗ 0.059999999999999984" in grid and "✗ 0.12000000000000001" in grid
        detail = shown(widget(app, ElementDetail))
        assert "after w[0, 0]  ✗ out of tolerance" in detail
        assert "NumPy 0.18" in detail and "torch 0.059999999999999984" in detail
        assert "abs 0.12000000000000001  rel 0.6666666666666667  ulp 6845471433603156" in detail
        await find(pilot, "after b")
        detail = shown(widget(app, ElementDetail))
        assert "NumPy 0.22" in detail and "torch 0.34" in detail


@run_async
async def test_space_steps_and_b_steps_back_without_moving_the_frontier():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "space", "n", "n")
        assert (app.frame.step, app.debugger.engine.next_step) == (2, 3)
        await press(pilot, "b", "b")
        assert (app.frame.step, app.debugger.engine.next_step) == (0, 3)
        assert "step 0 (epoch 0, batch 0) · 3/3 run" in shown(widget(app, StatusBar))
        await press(pilot, "n")  # forward from an old step: the next old step, nothing computed
        assert (app.frame.step, app.debugger.engine.next_step) == (1, 3)
        await press(pilot, "b", "b", "b")
        assert app.frame.step == INITIAL and "start (initial weights)" in shown(widget(app, StatusBar))


@run_async
async def test_keys_pressed_ahead_of_the_worker_are_kept():
    app = make_app(CHAOS, "fixed")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("n", "n", "n", "n", "n")
        await settle(pilot)
        while app.busy:
            await settle(pilot)
        assert app.frame.step == 4 and app.debugger.engine.next_step == 5


@run_async
async def test_g_jumps_to_a_step_and_back_to_the_start():
    app = make_app(CHAOS, "fixed")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "g")
        assert isinstance(app.screen, NumberPrompt)
        await type_text(pilot, "40")
        await press(pilot, "enter")
        assert (app.frame.step, app.debugger.engine.next_step) == (40, 41)
        await press(pilot, "g")
        await type_text(pilot, "3")
        await press(pilot, "enter")
        assert (app.frame.step, app.debugger.engine.next_step) == (3, 41)  # from the trace, no replay
        await press(pilot, "g")
        await type_text(pilot, "999")
        await press(pilot, "enter")  # out of range: refused in the prompt, which stays
        assert isinstance(app.screen, NumberPrompt) and app.frame.step == 3
        await press(pilot, "escape")
        assert app.screen is app.main and app.frame.step == 3


@run_async
async def test_c_continues_to_the_first_divergence_and_selects_it():
    app = make_app(CHAOS, "as-posted")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "c")
        assert (app.frame.step, app.main.selected) == (0, "grad w")
        assert app.frame.entry("grad w").status == Status.DIVERGED
        assert "✗ first divergence: step 0, grad w" in shown(widget(app, StatusBar))
        await press(pilot, "n", "n", "c")  # again later: back to the divergence already found
        assert (app.frame.step, app.main.selected, app.debugger.engine.next_step) == (0, "grad w", 3)


@run_async
async def test_i_runs_to_the_first_nan():
    app = make_app(CHAOS, "nan")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "i")
        assert app.frame.step == 120 and app.frame.first_nonfinite == 120
        assert app.main.selected == "grad w" and app.frame.entry("grad w").status == Status.NONFINITE
        assert "! grad w" in shown(widget(app, TensorNavigator))
        grid = shown(widget(app, TensorGrid))
        assert "! nan" in grid and "inf" in grid


@run_async
async def test_e_runs_to_the_end_and_r_runs_n_steps():
    app = make_app(CHAOS, "fixed")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "r")
        prompt = app.screen
        assert isinstance(prompt, NumberPrompt)
        prompt.query_one(Input).value = ""
        await type_text(pilot, "25")
        await press(pilot, "enter")
        assert (app.frame.step, app.debugger.engine.next_step) == (24, 25)
        await press(pilot, "e")
        assert (app.frame.step, app.debugger.engine.next_step) == (199, 200)
        assert not app.running and not app.busy
        status = shown(widget(app, StatusBar))
        assert "200/200 run" in status and "no divergence: all 200 steps within tolerance" in status
        assert "so far" not in status
        three = app.frame.with_(patches=("numpy.backward", "numpy.update", "torch.loss"))
        app.main.show_frame(three, None)
        await pilot.pause()
        assert "cpu float64" in shown(widget(app, StatusBar))  # the device stays; the patches list is what is cut
        await press(pilot, "n")  # past the end: says so, nothing breaks
        assert app.frame.step == 199


@run_async
async def test_held_n_is_added_up_into_one_move_never_dropped():
    """50 quick presses of n go 50 steps on (as one run), over steps already run as well; b likewise back."""
    app = make_app(CHAOS, "fixed")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press(*["n"] * 50)
        await settle(pilot)
        assert app.frame.step == 49 and app.debugger.engine.next_step == 50
        await pilot.press(*["b"] * 30)
        await settle(pilot)
        assert app.frame.step == 19
        await pilot.press(*["n"] * 20)  # over steps already run
        await settle(pilot)
        assert app.frame.step == 39 and app.debugger.engine.next_step == 50


@run_async
async def test_a_slow_step_says_it_is_running_and_escape_drops_what_is_queued(monkeypatch):
    """A step slower than 200 ms shows "stepping to step N…" with the key that stops; presses meanwhile are
    counted there, and escape drops them: only the step in flight lands."""
    from gradstep.tui.session import Debugger

    forward = Debugger.forward

    def slow_forward(self, view):
        import time
        time.sleep(1.5)
        return forward(self, view)

    monkeypatch.setattr(Debugger, "forward", slow_forward)
    app = make_app(CHAOS, "fixed")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await pilot.pause(0.35)
        bar = app.main.query_one("RunBar")
        label = bar.query_one("#run-label")
        text = str(label.render())
        assert bar.has_class("-running") and "stepping to step 0…" in text and "escape" in text
        assert "Stop" in footer_text(app)  # the footer offers escape with the bar
        await pilot.press("n", "n", "n")
        await pilot.pause(0.05)
        assert "(+3 steps queued)" in str(label.render())
        await pilot.press("escape")
        await settle(pilot)
        assert app.frame.step == 0 and not bar.has_class("-running")
        assert "Stop" not in footer_text(app)  # and no longer, once nothing is in flight (the diagnosis ran too)


@run_async
async def test_steps_queued_behind_a_step_that_fails_are_dropped_with_a_word(monkeypatch):
    """The step in flight raises: the presses queued behind it do not run, and a toast says how many went."""
    from gradstep.tui.session import Debugger

    forward = Debugger.forward

    def slow_forward(self, view):
        import time
        time.sleep(0.5)
        return forward(self, view)

    monkeypatch.setattr(Debugger, "forward", slow_forward)
    app = make_app(FAULTS, "raises")
    notes = recorded_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n", "n", "n")
        await pilot.press("n", "n", "n", "n")  # the first runs step 3, which raises; three wait behind it
        await settle(pilot)
        assert app.frame.error is not None and app.debugger.engine.next_step == 3
        assert any("+3 steps queued, dropped" in note for note in notes), notes


@run_async
async def test_a_long_run_is_interruptible_and_the_ui_stays_responsive():
    app = make_app("fizzbuzz", None)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await asyncio.sleep(1.0)
        assert app.running and app.main.query_one("RunBar").has_class("-running")
        assert app.check_action("step", ()) is None  # stepping is disabled (dimmed) while the run is in flight
        before = app.main.selected
        await pilot.press("n", "full_stop")  # n is ignored; looking still works
        await pilot.pause()
        assert app.main.selected != before and app.running
        await pilot.press("escape")
        await settle(pilot)
        assert not app.running
        total = app.debugger.engine.total_steps
        frontier = app.debugger.engine.next_step
        assert 0 < frontier < total and app.frame.step == frontier - 1


# ---- looking ----------------------------------------------------------------------


@run_async
async def test_the_tensor_opened_is_the_one_the_status_names():
    """xor as-posted diverges in its initial weights: `c` from the start says "step 0, before W1" and opens
    before W1 (not the after W1 a watched weight would become); on neuron a step that finds the first
    divergence opens it, and the next step keeps the tensor watched."""
    app = make_app("xor", "as-posted")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "c")
        step, tensor = app.frame.first_divergence
        assert (step, tensor) == (0, "before W1") and app.main.selected == tensor
        assert f"first divergence: step 0, {tensor}" in shown(widget(app, StatusBar))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        assert app.frame.first_divergence == (0, "grad w") and app.main.selected == "grad w"
        await find(pilot, "after w")
        await press(pilot, "n")
        assert app.frame.step == 1 and app.main.selected == "after w"


@run_async
async def test_next_and_previous_tensor_and_diverged_tensor():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        order = widget(app, TensorNavigator).keys_in_order
        assert app.main.selected == "grad w"  # the first divergence, found by this step: the one the status names
        await find(pilot, "after w")
        await press(pilot, "full_stop")
        assert app.main.selected == "after b" == order[-1]
        await press(pilot, "full_stop")
        assert app.main.selected == order[0]  # wraps
        await press(pilot, "comma", "comma")
        assert app.main.selected == order[-2]
        await press(pilot, "greater_than_sign")
        assert app.main.selected == "after b"
        await press(pilot, "greater_than_sign")
        assert app.main.selected == "grad w"  # wraps to the first one out of tolerance
        await press(pilot, "greater_than_sign")
        assert app.main.selected == "grad b"
        await press(pilot, "less_than_sign", "less_than_sign")
        assert app.main.selected == "after b"


@run_async
async def test_find_by_name_and_cancel():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        await find(pilot, "grad out")
        assert app.main.selected == "grad output"
        await press(pilot, "slash", "escape")
        assert app.screen is app.main and app.main.selected == "grad output"


@run_async
async def test_hex_and_difference_modes():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        await find(pilot, "after w")
        await press(pilot, "x")
        grid = shown(widget(app, TensorGrid))
        assert "0x3fc70a3d70a3d70a" in grid and "0x3faeb851eb851eb6" in grid
        assert app.main.model.hex_bits
        await press(pilot, "x")
        assert "0.18" in shown(widget(app, TensorGrid))
        await press(pilot, "d")
        assert app.main.mode == DiffMode.REL and "rel difference" in shown(widget(app, TensorGrid))
        assert "0.6666666666666667" in shown(widget(app, TensorGrid))
        await press(pilot, "d")
        assert app.main.mode == DiffMode.ULP and "6845471433603156" in shown(widget(app, TensorGrid))
        await press(pilot, "d")
        assert app.main.mode == DiffMode.ABS and "abs difference" in shown(widget(app, TensorGrid))


@run_async
async def test_copy_the_element_under_the_cursor_at_full_precision():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        await find(pilot, "after w")
        await press(pilot, "y")
        assert app.clipboard == "0.18"
        await press(pilot, "Y")
        assert app.clipboard == "0.059999999999999984"
        await press(pilot, "x", "Y")
        assert app.clipboard == "0x3faeb851eb851eb6"


@run_async
async def test_cursor_keys_and_worst_element_on_a_2d_tensor():
    app = make_app(FAULTS, "fixed")
    async with app.run_test(size=(200, 48)) as pilot:  # wide enough for x's three columns side by side (unfolded)
        await settle(pilot)
        await press(pilot, "n")
        await find(pilot, "x")
        grid = widget(app, TensorGrid)
        grid.focus()
        await press(pilot, "home")
        assert grid.cursor[0] == 0
        await press(pilot, "down", "right", "j", "l")
        assert grid.cursor == (1, 2)  # x is (2, 3): clamped at the edges
        await press(pilot, "k", "h", "up", "left")
        assert grid.cursor == (0, 0)
        await press(pilot, "end")
        assert grid.cursor == (1, 0)
        assert "x[1, 0]" in shown(widget(app, ElementDetail))
        await press(pilot, "pageup", "pagedown")
        assert grid.cursor == (1, 0)
        await press(pilot, "w")
        assert grid.cursor == app.main.model.worst_cell()


@run_async
async def test_rank_3_slices_change_with_brackets():
    app = make_app(FAULTS, "fixed")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        await find(pilot, "cube")
        first = app.main.model.slice_index
        await press(pilot, "right_square_bracket")
        assert app.main.model.slice_index == (first + 1) % 2
        title = shown(app.main.query_one("#tensor-title"))
        assert f"[{app.main.model.slice_index}, :, :] {app.main.model.slice_index + 1}/2" in title
        await press(pilot, "left_square_bracket")
        assert app.main.model.slice_index == first
        entry = app.frame.entry("cube")
        cell = widget(app, TensorGrid).cursor
        assert f" cube[{first}, {cell[0]}, {cell[1]}]" in shown(widget(app, ElementDetail))
        assert entry.numpy.shape == (2, 1, 2)


@run_async
async def test_big_tensor_opens_on_its_worst_element_and_scrolls():
    app = make_app(BIG, "as-posted")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        grid = widget(app, TensorGrid)
        assert (app.main.model.rows, app.main.model.cols) == (2048, 2048)
        assert grid.virtual_size.height == 2048 + grid.header_lines
        await press(pilot, "end")
        assert grid.cursor[0] == 2047 and "2047" in shown(grid)
        await press(pilot, "pageup", "l", "l", "l")
        assert grid.col_offset > 0 or grid.cursor[1] == 3
        assert len(app.main.model._tiles) < 16  # only what was looked at was formatted


# ---- errors, shapes, layout, help, keymap, quit -----------------------------------


@run_async
async def test_a_scenario_exception_is_shown_and_the_app_goes_on():
    app = make_app(FAULTS, "raises")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n", "n", "n", "n")
        banner = widget(app, ErrorBanner)
        assert banner.display and banner.has_class("-visible")
        text = shown(banner).replace("\n", "")
        for part in ("error at step 3", "numpy side's backward", "faults.py:", "ZeroDivisionError: planted failure"):
            assert part in text.replace("  ", " ") or part in text
        assert app.frame.step == 2 and app.debugger.engine.next_step == 3
        await press(pilot, "b")
        assert app.frame.step == 1 and app.is_running
        await press(pilot, "e")  # a run that fails says so too
        assert app.frame.error is not None and app.frame.step == 2


@run_async
async def test_a_shape_mismatch_is_marked_and_shown_side_by_side():
    app = make_app(FAULTS, "shape")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        assert app.frame.entry("out").status == Status.SHAPE
        assert "▭ out (3, 2)" in shown(widget(app, TensorNavigator))
        await find(pilot, "out")
        assert "NumPy (3, 2) vs torch (2, 2)" in shown(widget(app, ElementDetail))
        assert "(torch (2, 2))" in shown(app.main.query_one("#tensor-title"))
        await press(pilot, "end")
        third_row = lines(widget(app, TensorGrid))[4]  # two header lines, then rows 0, 1, 2
        assert third_row.startswith("2") and "·" in third_row  # torch has no third row; no difference to show


@run_async
async def test_compact_layout_switches_panes_and_resizes_live():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        screen = app.main
        assert screen.has_class("-compact")
        assert not widget(app, TensorNavigator).display or widget(app, TensorNavigator).region.width == 0
        await press(pilot, "t")
        assert widget(app, TensorNavigator).region.width > 0 and widget(app, TensorNavigator).has_focus
        assert widget(app, TensorGrid).region.width == 0
        await press(pilot, "down", "enter")
        assert widget(app, TensorGrid).has_focus and widget(app, TensorGrid).region.width > 0
        await press(pilot, "p")
        assert widget(app, LossPlot).region.height > 10
        await press(pilot, "p")
        assert widget(app, LossPlot).region.height == 0
        await pilot.resize_terminal(200, 60)
        await settle(pilot)
        assert not screen.has_class("-compact") and screen.has_class("-large")
        assert widget(app, TensorNavigator).region.width > 0 and widget(app, LossPlot).region.height > 0
        await press(pilot, "p")
        assert widget(app, LossPlot).region.height == 0
        await press(pilot, "t")
        assert widget(app, TensorNavigator).has_focus
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert screen.has_class("-compact")


@run_async
async def test_help_lists_every_binding_with_what_it_does():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = shown(app.screen.query_one("#help-table"))
        everything = (*ENGINE_BINDINGS, *PATCH_BINDINGS, *EDITOR_BINDINGS, *DIAGNOSIS_BINDINGS,
                      *FindingList.BINDINGS, *VIEW_BINDINGS, *TensorGrid.BINDINGS)
        for binding in everything:
            assert binding.id in text and (binding.tooltip or binding.description)[:30] in text
        for mark in "✓~◐▭!✗":
            assert mark in text
        await press(pilot, "escape")
        assert app.screen is app.main


@run_async
async def test_keys_can_be_remapped_by_binding_id():
    app = make_app(keymap={"step": "z", "step_back": "u"})
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "z", "z")
        assert app.frame.step == 1
        await press(pilot, "u")
        assert app.frame.step == 0
        await press(pilot, "question_mark")
        assert "z " in shown(app.screen.query_one("#help-table"))


@run_async
async def test_mouse_works_but_is_not_needed():
    app = make_app(FAULTS, "fixed")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        navigator = widget(app, TensorNavigator)
        row = navigator.region_of("after w").y
        await pilot.click(TensorNavigator, offset=(3, row + 1))
        await settle(pilot)
        assert app.main.selected == "after w"
        grid = widget(app, TensorGrid)
        geometry = grid._geometry()
        await pilot.click(TensorGrid, offset=(geometry.label + 3, grid.header_lines + 2))
        await settle(pilot)
        row, line = divmod(2, geometry.folds)  # the third line: row 2, or a folded row's next columns
        assert grid.cursor == (row, line * geometry.visible)


@run_async
async def test_light_theme_keeps_marks_and_symbols():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        app.theme = "textual-light"
        await press(pilot, "n")
        assert "✗ grad w" in shown(widget(app, TensorNavigator))


@run_async
async def test_q_quits():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running


def test_the_core_never_imports_textual():
    import subprocess
    import sys

    probe = ("import sys, gradstep.engine, gradstep.report, gradstep.cli, gradstep.compare; "
             "print(any(m == 'textual' or m.startswith('textual.') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_grid_never_holds_raw_floats_for_widgets():
    a = np.array([[0.1]])
    from gradstep.compare import Tolerance
    from gradstep.tui.grid_model import GridModel

    cell = GridModel("t", a, a, Tolerance(1e-7, 1e-7)).cell(0, 0)
    assert all(isinstance(v, str) for v in (cell.numpy, cell.torch, cell.diff))
