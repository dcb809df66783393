"""Sessions in the app: the save key writes a file; a saved session opens read-only and never runs code."""

from __future__ import annotations

import pytest

from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.recorded import RecordedRun
from gradstep.session_file import save
from gradstep.tui import create_app
from gradstep.tui.widgets import StatusBar
from tests.test_tui_helpers import make_app, press, recorded_notes, run_async, settle, shown

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture
def neuron_file(tmp_path):
    engine = Engine(load_scenario("neuron", "as-posted"))
    engine.run()
    return engine, save(engine, tmp_path / "neuron.gradstep").path


@run_async
async def test_a_saved_session_opens_read_only_with_its_steps(neuron_file):
    engine, path = neuron_file
    app = create_app(RecordedRun.open(path))
    async with app.run_test(size=(120, 40)) as pilot:
        notes = recorded_notes(app)
        await settle(pilot)
        assert f"read-only: {path.name}" in shown(app.main.query_one(StatusBar))
        assert f"read-only: recorded session {path}" in app.title
        await press(pilot, "n")
        assert app.frame.step == 0
        entry = app.frame.entry("after w")
        assert entry.numpy.tobytes() == engine.record(0).numpy["after w"].tobytes()
        assert entry.torch.tobytes() == engine.record(0).torch["after w"].tobytes()
        await press(pilot, "f")
        assert any("patching is unavailable: read-only recorded session" in n for n in notes)
        assert app.screen is app.main  # no editor
        await press(pilot, "e")
        assert app.frame.step == engine.next_step - 1
        assert "the recorded session ends at step 2" in notes[-1]
        await press(pilot, "b")
        assert app.frame.step == 1
        await press(pilot, "c")
        assert app.frame.step == 0 and app.frame.focus_key == "grad w"
        assert app.diagnosis is not None and app.diagnosis.findings[0].rule == "ratio"  # as saved
        await press(pilot, "ctrl+s")
        assert f"this is a saved session already: {path}" in notes[-1]


@run_async
async def test_a_step_outside_the_saved_window_shows_its_summary(tmp_path):
    engine = Engine(load_scenario("fizzbuzz", "as-posted"))
    engine.trace.budget_bytes = 1 << 20
    engine.run(steps=20)
    run = RecordedRun.open(save(engine, tmp_path / "fb.gradstep").path)
    missing = next(s for s in range(20) if s not in run.trace.window_steps())
    app = create_app(run)
    async with app.run_test(size=(120, 40)) as pilot:
        notes = recorded_notes(app)
        await settle(pilot)
        await press(pilot, "g", *str(missing), "enter")
        assert app.frame.step == missing
        assert f"step {missing}: only its summary was saved" in notes[-1]
        entry = app.frame.entry("after w1")
        assert not entry.recorded and entry.numpy is None
        assert entry.max_abs == float(engine.trace.max_abs[missing, engine.trace.keys.index("after w1")])
        await press(pilot, "a")
        assert "a diagnosis re-runs the scenario's code" in app.diagnosis.error


@run_async
async def test_the_save_key_writes_the_session(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        notes = recorded_notes(app)
        await settle(pilot)
        await press(pilot, "n", "n", "ctrl+s")
        target = tmp_path / "gradstep" / "sessions" / "neuron-as-posted-2steps.gradstep"
        assert f"saved to {target}" in notes[-1]
        run = RecordedRun.open(target)
        assert run.next_step == 2 and run.trace.window_steps() == [0, 1]


@run_async
async def test_a_save_that_cannot_be_written_is_a_message(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        notes = recorded_notes(app)
        await settle(pilot)
        await press(pilot, "ctrl+s")
        assert "cannot write it" in notes[-1]
        assert app.is_running


@run_async
async def test_names_in_a_file_are_text_never_markup(tmp_path):
    """A file from someone else may name a tensor ``[/x]`` or ``[@click=...]``: shown as written, nothing breaks."""
    engine = Engine(load_scenario("neuron", "as-posted"))
    engine.run()
    odd = "[@click=app.quit]out[/]put[/bad]"
    engine.trace.keys[engine.trace.keys.index("output")] = odd
    for step in engine.trace.window_steps():
        record = engine.trace.recent(step)
        for side in (record.numpy, record.torch, record.local):
            if side is not None and "output" in side:
                side[odd] = side.pop("output")
    app = create_app(RecordedRun.open(save(engine, tmp_path / "odd.gradstep").path))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        app.main._select(odd)
        await press(pilot, "slash")
        await pilot.pause(0.2)
        assert app.is_running and app._exception is None
        await press(pilot, "escape")
        assert odd in shown(app.main.query_one("#tensor-title"))
