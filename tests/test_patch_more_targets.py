"""Patching what a side is built with and what it reports: the torch model and optimizer, the metrics."""

from pathlib import Path

import numpy as np
import pytest

from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.patch import PIECES, Patch, PatchError, compile_patch, replay, source_of, targets_for, validate

FIXTURES = Path(__file__).parent / "fixtures"
WEIGHT_DECAY = str(FIXTURES / "weight_decay.py")

# The thread's fix: the biases in a parameter group of their own, without decay.
OPTIMIZER_FIX = '''def optimizer(net, hp):
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
    return torch.optim.SGD([{"params": weights, "weight_decay": hp.weight_decay},
                            {"params": biases, "weight_decay": 0.0}], lr=hp.lr)
'''


@pytest.fixture(scope="module")
def run():
    """weight_decay as posted, two steps run: the biases part at step 1."""
    scenario = load_scenario(WEIGHT_DECAY, "as-posted")
    engine = Engine(scenario)
    engine.run(steps=2)
    return scenario, engine


def test_the_model_the_optimizer_and_the_metrics_are_listed_where_the_scenario_has_them(run):
    scenario, _ = run
    assert targets_for(scenario) == [*PIECES["numpy"], "numpy.metrics",
                                     *PIECES["torch"], "torch.model", "torch.optimizer", "torch.metrics"]
    neuron = load_scenario("neuron", "as-posted")  # no metrics
    assert [t for t in targets_for(neuron) if t.endswith(("model", "optimizer", "metrics"))] == [
        "torch.model", "torch.optimizer"]
    with pytest.raises(PatchError, match="neuron's torch side has no metrics"):
        compile_patch(neuron, Patch("torch.metrics", "def m(net, data, hp):\n    return {}\n"))


def test_an_optimizer_patch_fixes_weight_decay_on_the_biases(run):
    scenario, engine = run
    assert (engine.first_divergence.step, engine.first_divergence.tensor) == (1, "update b1")
    patch = Patch("torch.optimizer", OPTIMIZER_FIX)
    validate(engine, patch, 1)
    fresh = replay(engine, scenario, [patch], 8)
    assert fresh.first_divergence is None and fresh.next_step == 8
    assert [m.epoch for m in fresh.trace.metrics] == [0, 1]


def test_a_model_patch_is_checked_against_the_parameters_the_engine_maps(run):
    scenario, engine = run
    original = source_of(scenario, "torch.model")
    assert original.startswith("def model(hp):")
    state = np.random.get_state()[1].copy()
    narrower = original.replace("nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)",
                                "nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)")
    with pytest.raises(PatchError, match=r"'0.weight' has shape \(16, 64\); the original gives \(32, 64\)"):
        validate(engine, Patch("torch.model", narrower), 1)
    # The same layers built another way: accepted; the shared initial weights overwrite its own.
    spelled_out = ("def model(hp):\n    net = nn.Sequential()\n    net.append(nn.Linear(64, 32))\n"
                   "    net.append(nn.ReLU())\n    net.append(nn.Linear(32, 10))\n    return net\n")
    validate(engine, Patch("torch.model", spelled_out), 1)
    assert (np.random.get_state()[1] == state).all()  # building a model to check it drew nothing from the run's RNG
    fresh = replay(engine, scenario, [Patch("torch.model", spelled_out)], 2)
    assert (fresh.first_divergence.step, fresh.first_divergence.tensor) == (1, "update b1")


def test_a_metrics_patch_reports_what_it_computes(run):
    scenario, engine = run
    original = source_of(scenario, "numpy.metrics")
    renamed = original.replace('{"accuracy":', '{"acc":')
    with pytest.raises(PatchError, match="the patch returns no 'accuracy'"):
        validate(engine, Patch("numpy.metrics", renamed), 1)
    error_rate = original.replace('{"accuracy": float(', '{"accuracy": 1 - float(')
    validate(engine, Patch("numpy.metrics", error_rate), 1)
    fresh = replay(engine, scenario, [Patch("numpy.metrics", error_rate)], 4)
    reported = fresh.trace.metrics[0]
    assert reported.numpy["accuracy"] == pytest.approx(1 - reported.torch["accuracy"], abs=1e-6)


def test_a_lambda_opens_as_the_def_a_patch_replaces_it_with():
    kink = load_scenario(str(FIXTURES / "kink.py"), None)
    assert source_of(kink, "torch.optimizer") == (
        "def optimizer(net, hp):\n    return torch.optim.SGD(net.parameters(), lr=hp.lr)\n")
    engine = Engine(kink)
    engine.run(steps=1)
    again = Patch("torch.optimizer", source_of(kink, "torch.optimizer"))
    validate(engine, again, 0)  # it compiles in the file's namespace and does what the lambda did
    assert (replay(engine, kink, [again], 1).trace.losses == engine.trace.losses).all()
