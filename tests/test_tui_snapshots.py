"""SVG snapshots of the debugger's screens (pytest-textual-snapshot).

Regenerate after a deliberate change, having looked at the new screens:
``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input, TextArea

from tests.test_tui_helpers import BIG, make_app

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


AFTER_W = ("n",)  # one step: watching w from the start, the view opens on after w


def test_main_screen_80x24_neuron_after_one_step(snap_compare):
    """Compact layout: after w of step 0, NumPy 0.18 against torch 0.059999999999999984, marked ✗."""
    assert snap_compare(make_app(), run_before=keys_then_settle(*AFTER_W), terminal_size=(80, 24))


def test_main_screen_160x48_neuron_after_one_step(snap_compare):
    """Standard layout: navigator by phase, grid, element detail, loss plot, footer."""
    assert snap_compare(make_app(), run_before=keys_then_settle(*AFTER_W), terminal_size=(160, 48))


def test_big_tensor_scrolled(snap_compare):
    """A 2048 x 2048 weight, scrolled down three pages and right four columns."""
    keys = ("pagedown", "pagedown", "pagedown", "l", "l", "l", "l")
    assert snap_compare(make_app(BIG, "as-posted"), run_before=keys_then_settle(*keys), terminal_size=(120, 36))


def test_help_screen(snap_compare):
    """Every binding, its keys, what it does and its id; the status marks."""
    assert snap_compare(make_app(), run_before=keys_then_settle("question_mark"), terminal_size=(120, 50))


def test_patch_editor_with_an_error(snap_compare):
    """The editor on the NumPy backward, opened on the line the diagnosis names (line 3), a syntax error typed
    there: refused, the line marked, the text kept."""

    async def run_before(pilot) -> None:
        await keys_then_settle("n", "f")(pilot)
        await pilot.press("end", "shift+home", *"grad_y", "space", "equals_sign", "space",
                          "left_parenthesis")
        await keys_then_settle("ctrl+r")(pilot)

    assert snap_compare(make_app(), run_before=run_before, terminal_size=(120, 34))


def test_presentation_mode_120x40(snap_compare):
    """P after one step: the step in big digits, after w with both values and the finding; the tensor below."""
    assert snap_compare(make_app(), run_before=keys_then_settle("n", "P"), terminal_size=(120, 40))
