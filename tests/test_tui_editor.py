"""The patch editor as a person types in it: Enter indents, keys that arrive together land in order, and it says
how far a replay is."""

from __future__ import annotations

import pytest
from textual import events
from textual.keys import _character_to_key

from gradstep.tui.screens import PatchEditor
from gradstep.tui.widgets import StatusBar
from tests.test_tui_helpers import (
    FIXTURES,
    apply_patch,
    make_app,
    open_editor,
    press,
    replace_line,
    run_async,
    settle,
    shown,
    type_text,
)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

WEIGHT_DECAY = str(FIXTURES / "weight_decay.py")
# Pasted over `return torch.optim.SGD(...)`, whose indentation stays.
FIX_OPTIMIZER = """weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
    return torch.optim.SGD([{"params": weights, "weight_decay": hp.weight_decay},
                            {"params": biases, "weight_decay": 0.0}], lr=hp.lr)"""


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
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n", "n", "n")  # step 2: the replay runs steps 0 to 2
        await open_editor(pilot, "numpy.backward")
        editor = app.screen
        assert isinstance(editor, PatchEditor)
        said: list[str] = []
        show = editor._message

        def message(text, error: bool = False) -> None:
            said.append(str(text))
            show(text, error)

        editor._message = message
        await replace_line(pilot, "grad_y = output - gt", "grad_y = 2 * (output - gt)", paste=True)
        await apply_patch(pilot)
        assert said[0].startswith("checking the patch on the step's inputs")
        counts = [text for text in said if "replaying: step" in text]
        assert counts and all(text.startswith("the patch passed its check; replaying: step ") for text in counts)
        assert counts[-1].endswith("step 3 of 3…")  # steps 0, 1 and 2
        assert app.debugger.patches.in_force() and app.screen is app.main


@run_async
async def test_weight_decay_on_the_biases_is_fixed_live_by_patching_the_torch_optimizer():
    """torch's SGD decays every parameter, NumPy only the weights: the biases part at step 1. In the editor the
    instructor picks torch.optimizer, pastes the thread's fix (the biases in a group without decay) and applies:
    the replay agrees at every step."""
    app = make_app(WEIGHT_DECAY, "as-posted")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "c")
        assert divergence(app) == (1, "update b1") and app.frame.step == 1
        await open_editor(pilot, "torch.optimizer")
        assert "torch optimizer" in shown(app.screen.query_one("#editor-title"))
        await replace_line(pilot, "return torch.optim.SGD(", FIX_OPTIMIZER, paste=True)
        await apply_patch(pilot)
        assert app.screen is app.main and divergence(app) is None
        status = shown(app.main.query_one(StatusBar))
        assert "first divergence: step 1 update b1 → none" in status and "patches: torch.optimizer" in status
        await press(pilot, "e")  # to the end, both epochs: parity throughout
        assert app.debugger.engine.next_step == 8 and divergence(app) is None
