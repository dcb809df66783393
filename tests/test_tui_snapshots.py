"""SVG snapshots of the debugger's screens (pytest-textual-snapshot).

Regenerate after a deliberate change, having looked at the new screens:
``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input, TextArea

from tests.test_tui_helpers import make_app

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(autouse=True)
def frozen_cursor(monkeypatch, tmp_path):
    """No blinking cursor in an Input or the editor: the snapshot must not depend on when it is taken.

    Patches would be saved under $XDG_STATE_HOME: a temporary one.
    """
    monkeypatch.setattr(Input, "cursor_blink", False)
    monkeypatch.setattr(TextArea, "cursor_blink", False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))


async def settled(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.3)  # screen switches are batched; the loss plot redraws at most every 0.25 s


def keys_then_settle(*keys: str):
    async def run_before(pilot) -> None:
        await settled(pilot)
        for key in keys:
            await pilot.press(key)
            await settled(pilot)

    return run_before


AFTER_W = ("n", "slash", *"after w", "enter")  # one step (it opens grad w, the first divergence), then after w
SIZES = [(80, 24), (120, 40), (200, 60)]
LINEAR2048 = str(__import__("pathlib").Path(__file__).parent / "fixtures" / "linear2048.py")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen_neuron_after_one_step(snap_compare, size):
    """after w of step 0, NumPy 0.18 against torch 0.059999999999999984, marked ✗; the footer fits the width."""
    assert snap_compare(make_app(), run_before=keys_then_settle(*AFTER_W), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, size):
    """Every binding, its keys, what it does and its id; the status marks."""
    assert snap_compare(make_app(), run_before=keys_then_settle("question_mark"), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_presentation_mode(snap_compare, size):
    """P after one step: the two values and their difference in block letters where there is room, the
    digits that part marked, the first finding centred; the tensor below."""
    assert snap_compare(make_app(), run_before=keys_then_settle(*AFTER_W, "P"), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_big_tensor_at_its_worst_element(snap_compare, size):
    """One 2048 x 2048 float32 layer, batch 8, one step: after w opens scrolled to its worst element."""
    assert snap_compare(make_app(LINEAR2048, "fixed"), run_before=keys_then_settle("n"), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_no_color(snap_compare, size, monkeypatch):
    """NO_COLOR=1: what is out of tolerance is reversed and marked, never dark grey on black."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(make_app(), run_before=keys_then_settle(*AFTER_W), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_light_theme(snap_compare, size):
    """textual-light: headers and phase names in the theme's contrast-adjusted accent."""

    async def run_before(pilot) -> None:
        pilot.app.theme = "textual-light"
        await keys_then_settle(*AFTER_W)(pilot)

    assert snap_compare(make_app(), run_before=run_before, terminal_size=size)


def test_patch_editor_with_an_error(snap_compare):
    """The editor on the NumPy backward, opened on the line the diagnosis names (line 3), a syntax error typed
    there: refused, the line marked, the text kept."""

    async def run_before(pilot) -> None:
        await keys_then_settle("n", "f")(pilot)
        await pilot.press("end", "shift+home", *"grad_y", "space", "equals_sign", "space",
                          "left_parenthesis")
        await keys_then_settle("ctrl+r")(pilot)

    assert snap_compare(make_app(), run_before=run_before, terminal_size=(120, 34))


