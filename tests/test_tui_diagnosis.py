"""The diagnosis pane, driven through Textual's pilot: findings ranked, the evidence one key away."""

from __future__ import annotations

import pytest

from gradstep.tui.widgets import DiagnosisPane, FindingList, TensorGrid
from tests.test_tui_helpers import lines, make_app, press, run_async, settle, shown

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def pane_text(app) -> str:
    pane = app.main.query_one(DiagnosisPane)
    parts = [shown(pane.query_one("#diagnosis-title")), *lines(pane.query_one(FindingList)),
             shown(pane.query_one("#finding-text"))]
    return "\n".join(parts)


@run_async
async def test_neuron_after_a_step_shows_the_ratio_finding_first_and_jumps_to_grad_w():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n")  # the first divergence is diagnosed at once, off the UI thread
        assert [f.rule for f in app.diagnosis.findings][:1] == ["ratio"]
        assert app.main.selected == "grad w"  # the first divergence this step found
        await press(pilot, "a")  # compact: the pane fills the body, the findings have the focus
        pane = app.main.query_one(DiagnosisPane)
        assert pane.region.height > 15 and app.main.query_one(TensorGrid).region.height == 0
        assert app.main.query_one(FindingList).has_focus
        text = pane_text(app)
        assert "diagnosis · step 0, the first divergence" in text
        assert "1. ●●● ratio · step 0 · grad w · numpy.backward" in text
        assert "torch's gradients are 2× NumPy's" in text and "where: step 0 · grad w · NumPy side" in text
        assert "confidence: high" in text and "evidence:" in text and "• grad w[0, 0]: numpy 1.2" in text
        await press(pilot, "enter")  # the evidence: step 0, grad w, in the tensor view
        assert app.frame.step == 0 and app.main.selected == "grad w"
        assert app.main.query_one(TensorGrid).has_focus and app.main.query_one(TensorGrid).region.height > 0
        assert "✗ 1.2" in shown(app.main.query_one(TensorGrid))
        await press(pilot, "n", "a")  # on the key, at any step: step 1
        assert app.diagnosis.step == 1 and not app.diagnosis.at_divergence
        assert app.diagnosis.findings[0].rule == "ratio" and "diagnosis · step 1 ·" in pane_text(app)
        await press(pilot, "a")  # again: back to the tensor
        assert app.main.query_one(TensorGrid).has_focus and pane.region.height == 0


@run_async
async def test_wide_the_pane_appears_beside_the_plot_with_the_first_divergence():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        pane = app.main.query_one(DiagnosisPane)
        assert pane.region.width == 0  # nothing to diagnose yet: the plot has the room
        await press(pilot, "n")
        plot = app.main.query_one("#plot")
        assert pane.region.width > 60 and pane.region.y == plot.region.y and plot.region.width > 0
        assert "1. ●●● ratio" in pane_text(app)
        await press(pilot, "a")
        assert app.main.query_one(FindingList).has_focus
        await press(pilot, "a")
        assert app.main.query_one(TensorGrid).has_focus


@run_async
async def test_a_fixed_variant_shows_no_finding():
    app = make_app("neuron", "fixed")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        assert app.diagnosis is None  # no divergence: nothing diagnosed unasked
        await press(pilot, "a")
        assert app.diagnosis.step == 0 and app.diagnosis.findings == ()
        text = pane_text(app)
        assert "nothing fits" in text and "Nothing fits at step 0" in text
        await press(pilot, "enter")  # no finding to jump to: nothing happens
        assert app.frame.step == 0 and app.is_running


async def _until(pilot, condition, seconds: float = 10.0) -> None:
    """Let the app run until ``condition()`` holds (a diagnosis that never ends: no waiting for the workers)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the app did not get there in time")


@run_async
async def test_a_diagnosis_that_never_ends_blocks_neither_stepping_nor_running_nor_quitting():
    """As the automatic diagnosis of a 2048 x 2048 layer once did: a step, a run and q stop it at once (it runs
    again when the worker is free); escape stops it for good and the pane says so."""
    app = make_app()  # neuron, as posted: three steps, diverged from step 0
    started: list[int | None] = []

    def endless(step):
        started.append(step)
        while True:  # Python that never returns, as a slow rule would: stopped between two instructions
            sum(range(1000))

    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.debugger.diagnose = endless
        await pilot.press("n")  # step 0 diverges: its diagnosis starts, and never ends
        await _until(pilot, lambda: started and app.busy)
        assert "diagnosing" in shown(app.main.query_one("#diagnosis-title"))
        await pilot.press("n")  # stepping stops it: the step lands, then the diagnosis starts again
        await _until(pilot, lambda: app.frame.step == 1 and len(started) == 2)
        assert "diagnosing" in shown(app.main.query_one("#diagnosis-title"))
        await pilot.press("e")  # a run too: to the end of the scenario
        await _until(pilot, lambda: not app.running and app.frame.step == 2 and len(started) == 3)
        await pilot.press("escape")  # stopped for good, and said so
        await _until(pilot, lambda: not app.busy)
        said = pane_text(app).replace("\n", " ")
        assert "the diagnosis was stopped before it ended (a runs it again)" in said
        await pilot.pause(0.3)
        assert len(started) == 3  # not started again
        await pilot.press("a")  # asked for again: it runs; and q stops it on the way out
        await _until(pilot, lambda: len(started) == 4 and app.busy)
        await pilot.press("q")
    assert not app.is_running


def test_a_diagnosis_stopped_halfway_leaves_its_thread_untraced_and_torch_threads_as_they_were(monkeypatch):
    """The line recorder traces the scenario's code and the replicas run on one torch thread, each for a moment;
    a stop landing in that moment must not leave the worker thread (which runs the next steps) that way."""
    import sys

    import torch

    from gradstep.engine import Engine
    from gradstep.loader import load_scenario
    from gradstep.stoppable import Stopped
    from gradstep.tui import session

    threads = torch.get_num_threads()

    def stopped_halfway(engine, step):
        sys.settrace(lambda frame, event, arg: None)
        torch.set_num_threads(1)
        raise Stopped

    monkeypatch.setattr(session, "diagnose", stopped_halfway)
    debugger = session.Debugger(Engine(load_scenario("neuron", "as-posted")))
    debugger.forward(-1)
    with pytest.raises(Stopped):
        debugger.diagnose(None)
    assert sys.gettrace() is None and torch.get_num_threads() == threads
