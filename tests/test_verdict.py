"""The verdict: different math is a divergence, rounding is not, whatever the scale of the tensors.

Scenarios of our own (tests/fixtures): a tutorial ReLU MLP on MNIST-shaped synthetic
data (``relu_mlp``) and a ReLU layer whose pre-activations sit within float32 rounding
of the kink (``kink``); the long runs at MNIST size are in benchmarks/bench_verdict.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gradstep.cli import main
from gradstep.compare import STATUS_FROM_FORMAT_1, Status
from gradstep.engine import Engine, EngineError
from gradstep.loader import LoadError, load_scenario
from gradstep.report import precision_note, to_json
from gradstep.session_file import _statuses_of_format_1, _summaries

FIXTURES = Path(__file__).parent / "fixtures"
KINK = str(FIXTURES / "kink.py")
MLP = str(FIXTURES / "relu_mlp.py")


def ran(path: str, variant: str, **options) -> Engine:
    engine = Engine(load_scenario(path, variant), **options)
    engine.run()
    return engine


def statuses(engine: Engine, key: str) -> list[Status]:
    column = engine.trace.keys.index(key)
    return [Status(int(s)) for s in engine.trace.status[:, column]]


# ---- rounding is not a divergence ---------------------------------------------------


def test_a_branch_taken_apart_at_relus_kink_is_rounding_and_parity():
    engine = ran(KINK, "fixed")
    assert engine.first_divergence is None
    assert statuses(engine, "grad z1")[0] == Status.ROUNDING  # out of tolerance locally, yet the same math
    reason = engine.rounding_reasons["grad z1"]
    assert "z1[" in reason and "kink at 0" in reason and "in float64 both sides agree to" in reason
    judgement = engine.referee_reports[0].judgements["grad z1"]
    assert judgement.rounding and judgement.run_diff > 1e-3 and judgement.referee_diff < 1e-12
    assert "differ only by rounding" in engine.rounding_summary


def test_a_real_bug_at_the_kink_still_diverges_and_says_the_math_differs():
    engine = ran(KINK, "as-posted")  # ReLU's derivative taken as 1 at exactly 0, on a blank input
    d = engine.first_divergence
    assert d is not None and d.step == 0 and d.tensor in ("grad z1", "grad b1")
    assert d.judgement is not None and not d.judgement.rounding
    assert d.decided_by().startswith("different math: in float64 the sides still differ by")
    assert d.judgement.referee_diff > 1e-3


@pytest.mark.parametrize("variant", ["fixed", "tiny"])
def test_correct_float32_twins_have_parity(variant):
    engine = ran(MLP, variant)
    assert engine.first_divergence is None, engine.first_divergence


def test_float32_numpy_against_float64_torch_is_parity_and_says_why():
    engine = ran(MLP, "numpy32")
    assert engine.first_divergence is None
    note = precision_note(engine)
    assert "the NumPy side computes in float32, torch in float64" in note and "float32 rounding" in note


def test_inputs_held_in_two_precisions_are_rounding_when_equal_at_the_lower_one():
    # float64 NumPy against float32 torch with float64-tight tolerances: the batch and the initial
    # weights are the same values, one side rounded to float32.
    engine = ran(str(FIXTURES / "planted" / "precision.py"), "as-posted", rtol=1e-10, atol=1e-12)
    assert engine.first_divergence is None
    assert statuses(engine, "before W")[0] == Status.ROUNDING
    assert "once both are rounded to float32" in engine.rounding_reasons["before W"]


# ---- small updates, judged on their own scale --------------------------------------------


@pytest.mark.parametrize("variant", ["as-posted", "as-posted-64"])
def test_a_learning_rate_5_percent_off_shows_at_its_first_update(variant):
    # Weights at 1e-4: every update is far below atol (1e-5 in float32, 1e-7 in float64).
    engine = ran(MLP, variant)
    d = engine.first_divergence
    assert d is not None and d.step == 1 and d.tensor.startswith("update "), d
    c = d.comparison
    assert c.n_bad == 0  # elementwise, every element is within tolerance ...
    assert 0.045 < c.norm_error < 0.055 and c.norm_bad  # ... normwise, it is 5% off
    assert d.decided_by().startswith("different math")


def test_the_update_pair_is_after_minus_before_on_each_side():
    engine = Engine(load_scenario(MLP, "fixed"))
    engine.step()
    record = engine.record(0)
    for side in (record.numpy, record.torch):
        assert np.array_equal(side["update W1"], side["after W1"] - side["before W1"])
    assert engine.phase_of("update W1") == "update"
    order = engine.compute_order(record)
    assert order.index("grad W1") < order.index("update W1") < order.index("after W1")


# ---- tolerances where they belong -----------------------------------------------------------


@pytest.mark.parametrize(("rtol", "atol"), [("nan", "1e-5"), ("1e-5", "nan"), ("-1", "-1"), ("inf", "0")])
def test_nonsense_tolerances_are_refused_with_exit_2(rtol, atol):
    result = CliRunner().invoke(main, ["check", "neuron", "--variant", "as-posted", "--rtol", rtol, "--atol", atol])
    assert result.exit_code == 2
    assert "must be a finite number >= 0" in result.output
    assert "PARITY" not in result.output and "Traceback" not in result.output


def test_one_tolerance_without_the_other_is_refused():
    result = CliRunner().invoke(main, ["check", "neuron", "--rtol", "1e-3"])
    assert result.exit_code == 2 and "together" in result.output


def test_a_scenario_declares_its_tolerances_and_the_command_line_overrides_them():
    base = load_scenario(MLP, "as-posted")
    loose = dataclasses.replace(base, rtol=0.1, atol=1.0, tolerances={"W1": (0.2, 1.0)})
    engine = Engine(loose)
    assert (engine.rtol, engine.atol) == (0.1, 1.0)
    engine.step()
    [w1] = [c for c in engine.compare(0) if c.key == "grad W1"]
    assert (w1.tolerance.rtol, w1.tolerance.norm) == (0.2, 0.2)  # its weight's own, normwise loosened with it
    [b1] = [c for c in engine.compare(0) if c.key == "grad b1"]
    assert b1.tolerance.rtol == 0.1
    overridden = Engine(loose, rtol=1e-6, atol=1e-6)
    assert (overridden.rtol, overridden.atol) == (1e-6, 1e-6) and overridden.tensor_tolerances == {}


def test_a_scenario_with_nonsense_tolerances_is_refused(tmp_path):
    source = Path(MLP).read_text().replace('    dtype="float32",\n    seed=0,',
                                           '    dtype="float32",\n    seed=0,\n    rtol=float("nan"), atol=1e-5,')
    path = tmp_path / "bad_tolerance.py"
    path.write_text(source)
    with pytest.raises(LoadError, match="rtol must be a finite number >= 0"):
        load_scenario(str(path))
    with pytest.raises(EngineError, match="tolerance"):
        Engine(dataclasses.replace(load_scenario(MLP, "fixed"), tolerances={"W1": (math.inf, 0.0)}))


# ---- said plainly ---------------------------------------------------------------------


def test_json_counts_rounding_per_tensor_and_says_what_decided():
    engine = ran(KINK, "fixed")
    out = json.loads(json.dumps(to_json(engine, engine.result())))
    assert out["parity"] and out["tensors"]["grad z1"]["rounding"] == 1
    assert out["tensors"]["grad z1"]["status"] == "rounding only"
    assert "kink at 0" in out["tensors"]["grad z1"]["rounding_reason"]
    diverged = ran(MLP, "as-posted")
    d = to_json(diverged, diverged.result())["first_divergence"]
    assert d["tensor"].startswith("update ") and d["decided_by"].startswith("different math")
    assert d["referee"]["precision"] == "float64" and not d["referee"]["rounding"]
    assert 0.045 < d["norm_error"] < 0.055


def test_saved_sessions_of_format_1_keep_their_statuses():
    old = {"$enum": "Status", "value": 5}  # format 1's DIVERGED
    assert _statuses_of_format_1({"c": [old]})["c"][0]["value"] == Status.DIVERGED
    status = np.array([[-1, 0, 1, 2, 3, 4, 5]], dtype=np.int8)
    summaries = {"keys": list("abcdefg"), "max_abs": np.zeros((1, 7)), "max_rel": np.zeros((1, 7), np.float32),
                 "n_bad": np.zeros((1, 7), np.int32), "status": status, "losses": np.zeros((1, 2))}
    renumbered = _summaries(summaries, 1, version=1)["status"][0]
    assert list(renumbered) == [-1, *(int(STATUS_FROM_FORMAT_1[v]) for v in range(6))]
    assert Status(int(renumbered[-1])) == Status.DIVERGED and Status(int(renumbered[3])) == Status.ONE_SIDE
