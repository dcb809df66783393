"""The patch editor as a person types in it: Enter indents, keys that arrive together land in order, and it says
how far a replay is."""

from __future__ import annotations

import pytest
from textual import events
from textual.keys import _character_to_key

from gradstep.tui.screens import PatchEditor
from tests.test_tui_helpers import make_app, open_editor, press, run_async, settle, shown, type_text

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    """Applied patches are saved under $XDG_STATE_HOME: a temporary one, never the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))


def burst(app, *keys: str) -> None:
    """Keys read in one go, as over SSH: all queued before the app handles the first (the pilot waits between).
    A key is a name (``down``) or a character (``=``)."""
    for key in keys:
        if len(key) == 1:
            app.post_message(events.Key(key if key.isalnum() else _character_to_key(key), key))
        else:
            app.post_message(events.Key(key, None))


def divergence(app) -> tuple[int, str] | None:
    d = app.debugger.engine.first_divergence
    return None if d is None else (d.step, d.tensor)


@run_async
async def test_enter_keeps_the_indentation_one_level_more_after_a_colon():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        await open_editor(pilot, "numpy.backward")
        area = app.screen.text_area
        first = area.text.splitlines()[0]
        assert first.startswith("def ") and first.rstrip().endswith(":")
        area.move_cursor((0, len(first)))
        await press(pilot, "enter")
        assert area.text.splitlines()[1] == "    " and area.cursor_location == (1, 4)
        await type_text(pilot, "if True:")
        await press(pilot, "enter")
        assert area.text.splitlines()[2] == "        " and area.cursor_location == (2, 8)
        await type_text(pilot, "x = 1")
        await press(pilot, "enter")
        assert area.text.splitlines()[2:4] == ["        x = 1", "        "]


@run_async
async def test_keys_that_arrive_together_land_in_order_and_apply_what_was_typed():
    """Down Down End Enter, a line, ctrl+r in one read: the line goes under the third, indented, and is applied."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        assert divergence(app) == (0, "grad w")
        await open_editor(pilot, "numpy.backward")
        area = app.screen.text_area
        area.move_cursor((0, 0))
        third = area.text.splitlines()[2]
        assert third.lstrip().startswith("grad_y = output - gt")
        burst(app, "down", "down", "end", "enter", *"grad_y = 2 * grad_y", "ctrl+r")
        await settle(pilot)
        while app.busy:
            await settle(pilot)
        assert app.screen is app.main, shown(app.screen.query_one("#patch-message"))  # applied: the editor closed
        source = app.debugger.patches.in_force()["numpy.backward"].source
        assert source.splitlines()[2:4] == [third, "    grad_y = 2 * grad_y"]
        assert divergence(app) is None


@run_async
async def test_the_editor_says_how_far_the_replay_is():
    """While a patch replays, the message counts the steps ("replaying: step k of n"), not what it did first."""
    app = make_app("fizzbuzz", "as-posted")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "g")
        await type_text(pilot, "40")
        await press(pilot, "enter")
        await open_editor(pilot, "torch.loss")
        editor = app.screen
        assert isinstance(editor, PatchEditor)
        said: list[str] = []
        show = editor._message

        def message(text, error: bool = False) -> None:
            said.append(str(text))
            show(text, error)

        editor._message = message
        area = editor.text_area
        row = next(i for i, line in enumerate(area.text.splitlines()) if "loss = error.pow(2).sum()" in line)
        area.move_cursor((row, len(area.text.splitlines()[row])))
        await type_text(pilot, "/2")
        await press(pilot, "ctrl+r")
        while app.busy:
            await settle(pilot)
        assert said[0].startswith("checking the patch on the step's inputs")
        counts = [text for text in said if "replaying: step" in text]
        assert counts and all(text.startswith("the patch passed its check; replaying: step ") for text in counts)
        assert counts[-1].endswith("step 41 of 41…")  # steps 0 to 40: 41 replayed
        assert app.debugger.patches.in_force() and app.screen is app.main
