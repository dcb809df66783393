"""A scenario a user wrote from `gradstep new`: a 2-8-1 tanh MLP with biases against nn.Sequential."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gradstep.cli import main
from gradstep.diagnosis import diagnose
from gradstep.engine import Engine
from gradstep.loader import load_scenario

MINE = str(Path(__file__).parent / "fixtures" / "mine_mlp.py")


def check(*args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(main, ["check", MINE, *args])


def test_both_sides_agree_when_fixed():
    done = check("--variant", "fixed")
    assert done.exit_code == 0, done.output
    assert "PARITY: mine (fixed), 20 steps" in done.stdout


def test_the_planted_bias_gradient_bug_diverges():
    done = check()
    assert done.exit_code == 1
    assert "First divergence: step 0 (epoch 0, batch 0), grad b1" in done.stdout
    assert "DIVERGED: mine (as-posted)" in done.stdout


def test_diagnosis_blames_the_numpy_bias_gradient_only():
    engine = Engine(load_scenario(MINE))
    engine.run()
    findings = diagnose(engine)
    assert findings and findings[0].rule == "ratio"
    # torch's float64 autograd is right: finite differences must not accuse it (they did while the
    # float64 replica's weights were views of its parameters).
    assert not any(f.side == "torch" for f in findings), [(f.rule, f.side) for f in findings]
