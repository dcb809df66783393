"""Patching in the debugger, through Textual's pilot: the editor, apply and replay, bad patches, history, files."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from textual import events
from textual.widgets import OptionList, TextArea

from gradstep import cli
from gradstep.patch import PIECES, Patch, default_patch_file, drafts_file, load_file, read_file, source_of
from gradstep.tui import create_app
from gradstep.tui.screens import MainScreen, PatchEditor
from gradstep.tui.screens.patch_editor import DRAFT_DELAY
from gradstep.tui.widgets import DiagnosisPane, RunBar, StatusBar
from tests.test_tui_helpers import (
    add_line_after,
    append_to_line,
    apply_patch,
    editor_text,
    make_app,
    open_editor,
    press,
    recorded_notes,
    replace_line,
    run_async,
    settle,
    shown,
    type_text,
)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

NEURON_FIX = "grad_y = 2*(output-gt)"


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    """Applied patches are saved under $XDG_STATE_HOME: a temporary one, never the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return tmp_path


def status(app) -> str:
    return shown(app.main.query_one(StatusBar))


def message(app) -> str:
    return shown(app.screen.query_one("#patch-message")).replace("\n", " ")


def divergence(app) -> tuple[int, str] | None:
    d = app.debugger.engine.first_divergence
    return None if d is None else (d.step, d.tensor)


# ---- the editor ---------------------------------------------------------------------------


@run_async
async def test_fixing_neuron_in_the_editor_gives_parity_at_every_step_and_survives_a_restart(state_home):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        assert divergence(app) == (0, "grad w")
        before = app.debugger.engine
        await open_editor(pilot, "numpy.backward")
        await replace_line(pilot, "grad_y = output - gt", NEURON_FIX)
        assert "    grad_y = 2*(output-gt)\n" in editor_text(pilot)
        await apply_patch(pilot)
        assert app.screen is app.main  # applied: the editor closes on the new comparison
        assert app.debugger.engine is not before and divergence(app) is None
        assert app.frame.step == 0 and app.debugger.engine.next_step == 1  # replayed to the step shown
        text = status(app)
        assert "first divergence: step 0 grad w → none" in text and "patches: numpy.backward" in text
        assert "✗ grad w" not in shown(app.main.query_one("TensorNavigator"))
        assert app.diagnosis is None and app.main.query_one(DiagnosisPane).diagnosis is None  # gone with the old run
        await press(pilot, "e")  # run to the end: parity at every step
        assert app.debugger.engine.next_step == 3 and divergence(app) is None
        saved = default_patch_file(app.debugger.patches.base)
        assert saved.is_relative_to(state_home) and saved.is_file()
        assert [p.target for p in load_file(saved)] == ["numpy.backward"]
        await pilot.press("q")
    # `gradstep neuron --variant as-posted --patch FILE`: the fix is back, the history holds it.
    mine = state_home / "mine.py"
    mine.write_text(saved.read_text())
    engine = cli.build_engine("neuron", "as-posted", "cpu", None, None, None, False, str(mine))
    again = create_app(engine)
    async with again.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert list(again.debugger.patches.in_force()) == ["numpy.backward"]
        assert "patches: numpy.backward" in status(again)
        await press(pilot, "e")
        assert again.debugger.engine.next_step == 3 and divergence(again) is None
        await press(pilot, "f")
        assert "grad_y = 2*(output-gt)" in editor_text(pilot)  # the editor opens on the patch in force
        await press(pilot, "escape", "u")  # and it can be undone like any other
        assert divergence(again) == (0, "grad w") and not again.debugger.patches.in_force()
    # The session saved to the file it was opened with, not to the default one.
    assert load_file(mine) == [] and [p.target for p in load_file(saved)] == ["numpy.backward"]


def test_open_takes_patch_like_check(tmp_path, monkeypatch):
    path = tmp_path / "fix.py"
    path.write_text("# --- gradstep patch: numpy.backward ---\n" + source_of(
        cli.build_engine("neuron", "as-posted", "cpu", None, None, None, False).scenario, "numpy.backward"))
    opened = {}

    class Fake:
        def run(self) -> None:
            pass

    def fake_app(engine, **options):
        opened["patches"] = [p.target for p in engine.patches]
        return Fake()

    monkeypatch.setattr("gradstep.tui.create_app", fake_app)
    done = CliRunner().invoke(cli.main, ["neuron", "--variant", "as-posted", "--patch", str(path)])
    assert done.exit_code == 0, done.output
    assert opened["patches"] == ["numpy.backward"]


@run_async
async def test_fizzbuzz_thread_fixes_one_at_a_time_move_the_first_divergence_later():
    app = make_app("fizzbuzz", "as-posted")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "g")
        await type_text(pilot, "20")
        await press(pilot, "enter")
        assert app.frame.step == 20 and divergence(app) == (0, "loss")

        await open_editor(pilot, "torch.loss")  # the thread: loss = error.pow(2).sum()/2, print (error**2).mean()
        await append_to_line(pilot, "loss = error.pow(2).sum()", "/2")
        await replace_line(pilot, '"printed": error.detach().mean()',
                           'return {"loss": loss, "printed": (error.detach() ** 2).mean()}', paste=True)
        await apply_patch(pilot)
        assert divergence(app) == (0, "grad w1") and app.frame.step == 20
        assert "first divergence: step 0 loss → step 0 grad w1" in status(app)

        await open_editor(pilot, "numpy.backward")  # hiddenerror from the output delta
        await replace_line(pilot, "hiddenerror = outerror.dot(", 'hiddenerror = outgrad.dot(weights["w2"].T)',
                           paste=True)
        await apply_patch(pilot)
        assert divergence(app) == (1, "grad b1")
        assert "first divergence: step 0 grad w1 → step 1 grad b1" in status(app)

        await open_editor(pilot, "torch.update")  # "you missed b1.grad.data.zero_()"
        await add_line_after(pilot, "w1.grad.zero_()", "b1.grad.zero_()")
        await apply_patch(pilot)
        assert divergence(app) is None and app.debugger.engine.next_step == 21
        text = status(app)
        assert "first divergence: step 1 grad b1 → none" in text
        assert "cpu float32 · patches: torch.loss, numpy.backward" in text  # the device stays; a long list is cut …


# ---- bad patches change nothing ----------------------------------------------------------

BAD = [  # (the line typed over `grad_y = output - gt`, the error shown, the line marked)
    ("grad_y = (", "syntax error", 3),
    ("1/0", "ZeroDivisionError", 3),
    ("grad_y = np.ones(4)", "'w' has shape (4,)", None),
    ("grad_y = output.astype('f4')", "'b' has dtype float32", None),
    ("grad_y = output * np.nan", "'w' has NaN or Inf", None),
    # Fine on the step shown (x = 1), a KeyError in the replay at step 0 (x = -1): a ScenarioError.
    ('grad_y = {1: output - gt}[batch["x"][0]]', "the replay failed at step 0 in the numpy side's backward", None),
]


@run_async
async def test_bad_patches_are_shown_with_their_line_and_change_nothing():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n", "n", "n")  # at step 2, where x = 1
        engine, frame = app.debugger.engine, app.frame
        await open_editor(pilot, "numpy.backward")
        editor = app.screen
        current = "grad_y = output - gt"
        for line, error, number in BAD:
            await replace_line(pilot, current, line, paste=len(line) > 10)
            current = line
            typed = editor_text(pilot)
            await apply_patch(pilot)
            assert app.screen is editor and app.is_running, line  # the editor stays, the app runs
            assert error in message(app), (line, message(app))
            assert "not applied" in message(app)
            assert editor_text(pilot) == typed  # the text stays to be fixed
            assert app.debugger.engine is engine and app.frame.step == frame.step == 2
            assert divergence(app) == (0, "grad w") and not app.debugger.patches.history.applied
            assert not default_patch_file(app.debugger.patches.base).exists()  # nothing saved
            if number is not None:  # the error's line is marked: the cursor on it, the line selected
                assert editor.error_line == number and editor.text_area.cursor_location[0] == number - 1
                assert f"{number} │" in message(app)
        assert "first divergence" in status(app) and "patches:" not in status(app)


@run_async
async def test_the_editors_highlighting_follows_a_light_or_dark_theme():
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "n", "f")
        area = app.screen.query_one(TextArea)
        assert app.current_theme.dark and area.theme == "monokai"
        app.theme = "textual-light"
        await settle(pilot)
        assert area.theme == "github_light"
        app.theme = "textual-dark"
        await settle(pilot)
        assert area.theme == "monokai"


@run_async
async def test_the_editor_shows_highlighted_python_and_escape_keeps_the_text():
    app = make_app(keymap={"edit_patch": "z"})  # the key is a remappable binding
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n", "z")
        editor = app.screen
        assert isinstance(editor, PatchEditor)
        # Every formula the scenario has is listed (its pieces: it has no step function; the torch model and
        # optimizer; no metrics); the diagnosis' suspect (numpy.backward) is open, as it is in force.
        targets = editor.query_one("#patch-targets", OptionList)
        listed = [targets.get_option_at_index(i).id for i in range(targets.option_count)]
        assert listed == [*PIECES["numpy"], *PIECES["torch"], "torch.model", "torch.optimizer"]
        assert editor.target == "numpy.backward"
        area = editor.query_one(TextArea)
        assert area.text == source_of(app.debugger.patches.base, "numpy.backward")
        # Syntax highlighting is really on (textual[syntax]): a parsed document, highlights, several colours.
        assert area.language == "python" and area.is_syntax_aware
        assert sum(len(spans) for spans in area._highlights.values()) > 5
        colours = {seg.style.color for seg in area.render_line(0) if seg.text.strip() and seg.style}
        assert len(colours) >= 3, colours
        await open_editor(pilot, "numpy.loss")
        await replace_line(pilot, "return (output - gt) ** 2", "return (output - gt) ** 2 / 2")
        draft = editor_text(pilot)
        await press(pilot, "escape")
        assert isinstance(app.screen, MainScreen) and divergence(app) == (0, "grad w")
        await press(pilot, "z")
        assert app.screen.target == "numpy.loss" and editor_text(pilot) == draft
        await open_editor(pilot, "numpy.backward")  # another formula, and back: each keeps its text
        assert "grad_y = output - gt" in editor_text(pilot)
        targets = app.screen.query_one("#patch-targets", OptionList)
        assert str(targets.get_option("numpy.loss").prompt).startswith("✎")  # marked: text not applied
        await open_editor(pilot, "numpy.loss")
        assert editor_text(pilot) == draft
        await press(pilot, "f2")  # revert: the formula in force again
        assert editor_text(pilot) == source_of(app.debugger.patches.base, "numpy.loss")


@run_async
async def test_a_replay_can_be_cancelled_and_the_previous_run_stays():
    app = make_app("fizzbuzz", "as-posted")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "g")
        await type_text(pilot, "100")
        await press(pilot, "enter")
        engine = app.debugger.engine
        await open_editor(pilot, "torch.loss")
        await add_line_after(pilot, "loss = error.pow(2).sum()", "loss = loss / 2")
        # Apply, and escape at once (the pilot's press would wait out the replay between two keys).
        app.post_message(events.Key("ctrl+r", None))
        app.post_message(events.Key("escape", None))  # cancels the replay in flight, between two steps
        await settle(pilot)
        while app.busy:
            await settle(pilot)
        assert isinstance(app.screen, PatchEditor) and "replay cancelled" in message(app)
        assert app.debugger.engine is engine and engine.next_step == 101 and app.frame.step == 100
        assert not app.debugger.patches.history.applied and "loss = loss / 2" in editor_text(pilot)
        assert not app.main.query_one(RunBar).has_class("-running")


# ---- history -------------------------------------------------------------------------------


@run_async
async def test_undo_redo_and_reset_each_replay_and_save():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        await open_editor(pilot, "numpy.backward")
        await replace_line(pilot, "grad_y = output - gt", NEURON_FIX)
        await apply_patch(pilot)
        saved = default_patch_file(app.debugger.patches.base)
        assert [p.target for p in load_file(saved)] == ["numpy.backward"]
        assert divergence(app) is None and "patches: numpy.backward" in status(app)

        await press(pilot, "u")
        assert not app.debugger.patches.in_force() and divergence(app) == (0, "grad w")
        assert "first divergence: none → step 0 grad w" in status(app) and "patches:" not in status(app)
        assert load_file(saved) == []  # not in force: --patch applies nothing
        assert [p.target for p in read_file(saved).kept] == ["numpy.backward"]  # and the fix is still on disk
        await press(pilot, "U")
        assert list(app.debugger.patches.in_force()) == ["numpy.backward"] and divergence(app) is None
        await press(pilot, "R")  # back to the original
        assert not app.debugger.patches.in_force() and divergence(app) == (0, "grad w")
        assert load_file(saved) == []
        engine = app.debugger.engine
        await press(pilot, "u")  # nothing left to undo: says so, replays nothing
        assert app.debugger.engine is engine and app.is_running
        await press(pilot, "U")  # a reset can be redone
        assert list(app.debugger.patches.in_force()) == ["numpy.backward"] and divergence(app) is None


@run_async
async def test_an_earlier_sessions_patches_are_offered_and_text_is_on_disk_as_it_is_typed(state_home):
    neuron = cli.build_engine("neuron", "as-posted", "cpu", None, None, None, False).scenario
    fix = source_of(neuron, "numpy.backward").replace("grad_y = output - gt", NEURON_FIX)
    from gradstep.patch import PatchSet, save

    save(PatchSet([Patch("numpy.backward", fix)]), neuron)  # what an earlier session left
    app = make_app()
    notes = recorded_notes(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert any("An earlier session saved patches" in n and "numpy.backward" in n for n in notes)
        await open_editor(pilot, "numpy.backward")
        assert NEURON_FIX in editor_text(pilot)  # offered: ctrl+r applies it
        await open_editor(pilot, "numpy.loss")
        await append_to_line(pilot, "return (output - gt) ** 2", "  # typed")
        await pilot.pause(DRAFT_DELAY + 0.3)
        assert isinstance(app.screen, PatchEditor)  # still typing: nothing closed or applied
        assert "# typed" in drafts_file(default_patch_file(neuron)).read_text()


def test_patches_from_the_file_seed_the_history(tmp_path):
    path = tmp_path / "two.py"
    neuron = cli.build_engine("neuron", "as-posted", "cpu", None, None, None, False).scenario
    fix = source_of(neuron, "numpy.backward").replace("grad_y = output - gt", NEURON_FIX)
    from gradstep.patch import dumps

    path.write_text(dumps([Patch("numpy.backward", fix)], neuron))
    app = create_app(cli.build_engine("neuron", "as-posted", "cpu", None, None, None, False, str(path)))
    assert app.debugger.patches.history.applied == [Patch("numpy.backward", fix)]
    assert app.debugger.patches.base is not app.debugger.engine.scenario  # the original, unpatched


@run_async
async def test_f_opens_what_the_first_finding_blames(state_home):
    """After a finding blames numpy.backward, f opens it even when torch.loss was edited last."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        assert app.diagnosis.findings[0].function == "numpy.backward"
        app.debugger.patches.last_target = "torch.loss"
        await press(pilot, "f")
        editor = app.screen
        assert isinstance(editor, PatchEditor) and editor.target == "numpy.backward"
        area = editor.query_one(TextArea)
        first = area.text.splitlines()[0]
        assert first.startswith("def ") and first.rstrip().endswith(":")

