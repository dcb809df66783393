"""Workshops and GPU boxes, driven through the pilot: presentation mode, the screenshot key, scenario errors
with their file and line, and the device memory handed back on quitting."""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path

import pytest

from gradstep.tui.bindings import SHOW_BINDINGS
from gradstep.tui.screens import HelpScreen
from gradstep.tui.screenshot import screenshot_path
from gradstep.tui.widgets import (
    ElementDetail,
    ErrorBanner,
    LossPlot,
    PresentHeading,
    StatusBar,
    TensorGrid,
    TensorNavigator,
)
from tests.test_tui import find
from tests.test_tui_helpers import FAULTS, lines, make_app, press, recorded_notes, run_async, settle, shown

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def widget(app, kind):
    return app.screen.query_one(kind)


def heading(app) -> str:
    return shown(app.main.query_one("#present-facts"))


# ---- presentation mode ----------------------------------------------------------------


@run_async
async def test_present_key_shows_the_step_big_and_the_key_numbers_then_gives_the_layout_back():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        await find(pilot, "after w")  # from grad w, the first divergence
        screen = app.main
        assert not screen.has_class("-present") and widget(app, TensorNavigator).region.width > 0
        await press(pilot, "P")
        assert screen.has_class("-present")
        assert widget(app, PresentHeading).region.height > 5
        assert app.main.query_one(PresentHeading).step_text == "0"  # the step, in big digits
        facts = heading(app)
        for part in ("step 0 (epoch 0, batch 0)", "after w  (1, 1)", "✗ diverged", "worst element [0, 0]",
                     "✗ first divergence: step 0, grad w"):
            assert part in facts
        # The two values and their difference are block letters, 5 rows each, the digits that part marked.
        values = app.main.query_one("#present-values")
        view = app.main.query_one(PresentHeading).view
        assert (view.numpy, view.torch, view.abs) == ("0.18", "0.059999999999999984", "0.12000000000000001")
        drawn = lines(values)
        assert values.region.height >= 12 and sum("█" in line for line in drawn) >= 10
        assert any(line.lstrip().startswith("NumPy") for line in drawn)
        assert any(line.lstrip().startswith("torch") for line in drawn)
        assert "rel 0.6666666666666667" in "\n".join(drawn)
        finding = shown(app.main.query_one("#present-finding"))
        assert "●●●" in finding and "2×" in finding and "numpy.backward" in finding
        for hidden in (TensorNavigator, LossPlot, StatusBar, ElementDetail):
            assert widget(app, hidden).region.height == 0 or widget(app, hidden).region.width == 0
        assert widget(app, TensorGrid).region.height > 10 and widget(app, TensorGrid).spacious
        await press(pilot, "n")
        assert app.main.query_one(PresentHeading).step_text == "1" and "step 1 (epoch 0, batch 1)" in heading(app)
        await press(pilot, "P")  # back: the same step and tensor, the normal layout
        assert not screen.has_class("-present") and widget(app, PresentHeading).region.height == 0
        assert widget(app, TensorNavigator).region.width > 0 and widget(app, LossPlot).region.height > 0
        assert not widget(app, TensorGrid).spacious
        assert app.frame.step == 1 and screen.selected == "after w"
        assert "step 1 (epoch 0, batch 1)" in shown(widget(app, StatusBar))


@run_async
async def test_presenting_at_80x24_keeps_the_panes_and_the_start_shows_a_dash():
    app = make_app(present=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.main
        assert screen.has_class("-present") and screen.has_class("-compact")
        assert app.main.query_one(PresentHeading).step_text == "-" and "start (initial weights)" in heading(app)
        assert not widget(app, TensorGrid).spacious  # at 80 columns every column counts
        await press(pilot, "n")
        await find(pilot, "after w")
        assert "NumPy  0.18" in heading(app)
        grid = widget(app, TensorGrid)
        assert grid.region.height >= 8 and "✗ 0.059999999999999984" in shown(grid)
        await press(pilot, "a")  # the diagnosis fills the body, as in the compact layout
        assert grid.region.height == 0 and app.main.query_one("#diagnosis").region.height > 5
        await press(pilot, "a")
        assert grid.region.height >= 8 and grid.has_focus
        await press(pilot, "t", "P")  # the tensor list stays the pane shown, without the heading
        assert not screen.has_class("-present") and widget(app, TensorNavigator).has_focus
        assert widget(app, TensorNavigator).region.width > 0


@pytest.mark.parametrize("width", [80, 100, 120, 200])
@run_async
async def test_the_footer_fits_the_width_with_whole_words_and_help_always(width):
    """Never cut mid-word; `?` at every width; at 80x24 t, p and a (the only ways to the list, the plot and the
    diagnosis in the compact layout) are there; at 120 the workshop keys P and S too."""
    from gradstep.tui.bindings import DIAGNOSIS_BINDINGS, ENGINE_BINDINGS, PATCH_BINDINGS, VIEW_BINDINGS

    app = make_app()
    async with app.run_test(size=(width, 24 if width == 80 else 40)) as pilot:
        await settle(pilot)
        footer = shown(app.main.query_one("#footer"))
        assert len(footer) <= width and footer.rstrip().endswith("? Help")
        described = {b.description for b in (*ENGINE_BINDINGS, *PATCH_BINDINGS, *DIAGNOSIS_BINDINGS,
                                             *SHOW_BINDINGS, *VIEW_BINDINGS)}
        shown_pairs = footer.split("  ")
        for pair in filter(None, (p.strip() for p in shown_pairs)):
            _key, _, description = pair.partition(" ")
            assert description in described, pair  # a whole description, never a cut one
        for must in ("n Step", "t Tensors", "p Plot", "a Diagnose"):
            assert must in footer
        if width >= 120:
            assert "P Present" in footer and "S Screenshot" in footer


@run_async
async def test_present_key_is_in_the_footer_and_help():
    app = make_app()
    async with app.run_test(size=(200, 40)) as pilot:
        await settle(pilot)
        footer = shown(app.main.query_one("#footer"))  # what the footer shows
        assert "P Present" in footer and "S Screenshot" in footer
        await press(pilot, "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = shown(app.screen.query_one("#help-table"))
        for binding in SHOW_BINDINGS:
            assert binding.id in text and binding.tooltip[:30] in text


# ---- the screenshot key -----------------------------------------------------------------


def test_screenshot_names_say_scenario_variant_and_step(monkeypatch, tmp_path):
    now = datetime(2026, 5, 1, 9, 30, 5)
    monkeypatch.delenv("GRADSTEP_SCREENSHOT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    here = screenshot_path("neuron", "as-posted", 0, now)
    assert here == tmp_path.resolve() / "gradstep-neuron-as-posted-step0-20260501-093005.svg"  # absolute: says where
    monkeypatch.setenv("GRADSTEP_SCREENSHOT_DIR", str(tmp_path / "shots"))
    start = screenshot_path("my model", "fixed", -1, now)
    assert start == tmp_path.resolve() / "shots" / "gradstep-my_model-fixed-start-20260501-093005.svg"


@run_async
async def test_screenshot_key_writes_an_svg_and_says_where(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADSTEP_SCREENSHOT_DIR", str(tmp_path))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        await find(pilot, "after w")
        await press(pilot, "P")
        notes = recorded_notes(app)
        await press(pilot, "S")
        await pilot.pause(0.1)
        saved = list(tmp_path.glob("gradstep-neuron-as-posted-step0-*.svg"))
        assert len(saved) == 1
        svg = saved[0].read_text()
        assert svg.startswith("<svg") and "0.059999999999999984" in svg.replace("&#160;", " ")
        assert any(str(saved[0]) in note for note in notes)
        assert app.is_running


@run_async
async def test_two_screenshots_in_one_second_keep_both_and_show_no_toast(monkeypatch, tmp_path):
    """Same second, same name: the second gets ``-2``; the first one's toast is not in the second picture,
    and toasts are short and sit at the top, away from the diagnosis at the bottom."""
    from gradstep.tui.app import NOTICE_S

    monkeypatch.setenv("GRADSTEP_SCREENSHOT_DIR", str(tmp_path))
    monkeypatch.setattr("gradstep.tui.screenshot.datetime", type("Frozen", (), {
        "now": staticmethod(lambda: datetime(2026, 5, 1, 9, 30, 5))}))
    app = make_app()
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot)
        await press(pilot, "n", "S")
        await pilot.pause(0.3)
        toasts = list(app.screen.query("Toast"))
        assert toasts and "saved to" in str(toasts[0].render())
        diagnosis = app.main.query_one("#diagnosis").region
        assert all(not toast.region.overlaps(diagnosis) for toast in toasts) and NOTICE_S <= 4
        await press(pilot, "S")
        await pilot.pause(0.1)
        first, second = sorted(tmp_path.glob("*.svg"))
        assert first.name == "gradstep-neuron-as-posted-step0-20260501-093005-2.svg"
        assert second.name == "gradstep-neuron-as-posted-step0-20260501-093005.svg"
        assert "saved&#160;to" not in first.read_text() and "saved to" not in first.read_text()


@run_async
async def test_screenshot_in_a_browser_is_a_download(monkeypatch, tmp_path):
    from gradstep.tui.app import GradstepApp

    monkeypatch.setenv("GRADSTEP_SCREENSHOT_DIR", str(tmp_path))
    monkeypatch.setattr(GradstepApp, "is_web", property(lambda self: True))
    delivered = []
    monkeypatch.setattr(GradstepApp, "deliver_screenshot", lambda self, name: delivered.append(name))
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        notes = recorded_notes(app)
        await press(pilot, "S")
        await pilot.pause(0.1)
    assert len(delivered) == 1 and delivered[0].startswith("gradstep-neuron-as-posted-start-")
    assert any("sent to the browser" in note for note in notes) and not list(tmp_path.iterdir())


@run_async
async def test_screenshot_into_an_unwritable_directory_is_a_message(monkeypatch, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(locked, os.W_OK):  # root writes anywhere: a directory that does not exist fails the same way
        locked = tmp_path / "missing" / "dir"
    monkeypatch.setenv("GRADSTEP_SCREENSHOT_DIR", str(locked))
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        notes = recorded_notes(app)
        await press(pilot, "S")
        await pilot.pause(0.1)
        assert any(note.startswith("screenshot not saved") and str(locked) in note for note in notes)
        assert app.is_running


# ---- errors in the scenario's code ----------------------------------------------------


@run_async
async def test_an_exception_in_the_scenario_shows_side_function_step_file_and_line():
    line = next(i for i, text in enumerate(Path(FAULTS).read_text().splitlines(), 1)
                if 'raise ZeroDivisionError("planted failure")' in text)
    app = make_app(FAULTS, "raises")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await press(pilot, "n", "n", "n", "n")
        text = " ".join(shown(widget(app, ErrorBanner)).split())
        for part in ("error at step 3", "numpy side's backward", f"faults.py:{line}",
                     "ZeroDivisionError: planted failure"):
            assert part in text
        assert app.is_running and app.frame.step == 2
        await press(pilot, "P")  # presenting, the error stays on screen
        assert widget(app, ErrorBanner).region.height > 0
        assert f"faults.py:{line}" in " ".join(shown(widget(app, ErrorBanner)).split())


# ---- device memory on quitting ----------------------------------------------------------


@run_async
async def test_quitting_releases_device_memory(monkeypatch):
    released = []
    monkeypatch.setattr("gradstep.tui.app.release_device_memory", lambda: released.append(True) or False)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        assert not released
        await pilot.press("q")
        await pilot.pause()
    assert released == [True] and not app.is_running
    assert app.debugger.engine.next_step == 1  # the engine stays with its owner (the CLI drops it)
