"""The check report at any terminal width: every number whole, however narrow the console."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.numfmt import fmt
from gradstep.report import print_report, tensor_summary


@pytest.fixture(scope="module")
def neuron_run():
    engine = Engine(load_scenario("neuron", "as-posted"))
    return engine, engine.run(steps=3)


def report_at(width: int, engine: Engine, result) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    print_report(console, engine, result)
    return console.export_text()


def tensor_table_form(text: str) -> str:
    if "│ x           │ ✓ within tolerance" in text:
        return "words"
    if "│ x           │ ✓ │" in text:
        return "marks"
    return "stacked" if "   max abs     0.12000000000000001" in text else "?"


@pytest.mark.parametrize("width, form", [(100, "words"), (80, "marks"), (60, "stacked")])
def test_the_tensor_table_narrows_rather_than_fold_a_number(neuron_run, width, form):
    engine, result = neuron_run
    text = report_at(width, engine, result)
    assert tensor_table_form(text) == form
    words = set(text.split())
    for row in tensor_summary(engine):  # every figure whole, at full precision
        assert fmt(row["max_abs"]) in words and fmt(row["max_rel"]) in words, row["tensor"]
    if form == "marks":  # the marks alone need their legend
        assert "✓ within tolerance  ~ drift only  ✗ diverged" in text
    assert max(len(line) for line in text.splitlines()) <= width


@pytest.mark.parametrize("width", [100, 80, 50])
def test_the_end_of_the_run_keeps_every_weight_whole(neuron_run, width):
    engine, result = neuron_run
    text = report_at(width, engine, result)
    final = engine.final_state()
    end = text[text.index("End of the run"):]
    words = set(end.split())
    for side in ("numpy", "torch"):
        assert fmt(final[side]["loss"]) in words
        for weight in final[side]["weights"].values():
            assert fmt(weight.reshape(-1)[0]) in words
    stacked = "  abs difference  " in end
    assert stacked == (width < 90)  # the table needs 84 columns: below, one value a line


def test_the_end_of_the_run_and_json_show_every_loss_phase_value():
    """fizzbuzz reports `printed` (the thread's printed number) beside its loss: both are in the end table
    and in ``--json``'s ``final``, each side in its own dtype, never just the loss."""
    from gradstep.report import loss_values, to_json

    engine = Engine(load_scenario("fizzbuzz", "as-posted"))
    result = engine.run(steps=2)
    values = loss_values(engine)
    assert set(values["numpy"]) == set(values["torch"]) == {"loss", "printed"}
    last = engine.record(1)
    assert values["torch"]["printed"] == last.torch["printed"].reshape(-1)[0]
    end = report_at(100, engine, result)
    end = end[end.index("End of the run"):]
    assert "printed (last step)" in end
    for side in ("numpy", "torch"):
        assert fmt(values[side]["printed"]) in end.split()
    final = to_json(engine, result)["final"]
    for side in ("numpy", "torch"):
        assert final[side]["loss_values"] == {k: float(v) for k, v in values[side].items()}
