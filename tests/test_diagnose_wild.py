"""Diagnosis on code it was not written for: bugs planted in scenarios written the way users write them.

Every file under tests/fixtures/planted/wild/ is a small scenario in a user's
style (tutorial MLPs, softmax regression, hand-written optimizers, float32 and
float64) and declares ``EXPECTED``: for each variant with a planted bug, the
first finding's rule, side and function and phrases its cause must contain.
A variant not in ``EXPECTED`` is a correct twin: no divergence, no finding. An
expectation with no side is a difference that is not a bug (the first finding
must say so and blame no side).
Each case runs a few steps (``STEPS``, default 3) and diagnoses the first
divergence directly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from gradstep.diagnosis import diagnose
from gradstep.engine import Engine
from gradstep.loader import load_scenario

WILD = Path(__file__).parent / "fixtures" / "planted" / "wild"
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def fixture_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"wild_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULES = {path.stem: fixture_module(path) for path in sorted(WILD.glob("*.py"))}
# A variant that changes nothing (a twin's "fixed") is its "as-posted" again: run once.
CASES = [(stem, variant) for stem, module in MODULES.items() for variant, v in module.SCENARIO.variants.items()
         if v.replace or variant == module.SCENARIO.default_variant]


@pytest.mark.parametrize(("fixture", "variant"), CASES, ids=[f"{f}-{v}" for f, v in CASES])
def test_first_finding_names_the_cause_its_side_and_its_function(fixture, variant):
    module = MODULES[fixture]
    engine = Engine(load_scenario(str(WILD / f"{fixture}.py"), variant))
    engine.run(steps=getattr(module, "STEPS", 3))
    findings = diagnose(engine, strict=True)
    expected = module.EXPECTED.get(variant)
    if expected is None:
        assert engine.first_divergence is None, engine.first_divergence
        assert findings == []
        # Asked at a step anyway, every rule and the localiser run on correct code: they must find nothing.
        assert diagnose(engine, step=engine.next_step - 1, strict=True) == []
        return
    rule, side, function, phrases, *extra = expected
    assert findings, "no finding"
    top = findings[0]
    assert (top.rule, top.side, top.function) == (rule, side, function), top.cause
    for phrase in phrases:
        assert phrase in top.cause, top.cause
    absent = extra[0].get("absent", []) if extra else []
    assert not [f.rule for f in findings if f.rule in absent], [f.cause for f in findings if f.rule in absent]


def test_rounding_at_a_kink_is_named_and_blames_no_side():
    """Correct float32 code where one pre-activation is 7.45e-09 on one side and 0 on the other."""
    engine = Engine(load_scenario(str(WILD.parent.parent / "rounding_kink.py"), "as-posted"))
    engine.run(steps=1)
    findings = diagnose(engine, strict=True)
    if engine.first_divergence is None:  # the comparison itself already calls it rounding: nothing to diagnose
        assert findings == []
        return
    assert (findings[0].rule, findings[0].side, findings[0].function) == ("kink", None, None)
    assert "rounding at a kink, not a bug" in findings[0].cause
    assert [f for f in findings if f.side is not None] == []


def test_the_suite_is_the_one_the_issue_asks_for():
    # A case whose first finding blames no side is a difference that is not a bug (an L2 term split between a
    # gradient and an optimizer): neither a planted bug nor a twin without a finding.
    planted = [(f, v) for f, v in CASES if v in MODULES[f].EXPECTED and MODULES[f].EXPECTED[v][1] is not None]
    twins = [(f, v) for f, v in CASES if v not in MODULES[f].EXPECTED]
    by_line = [(f, v) for f, v in planted if MODULES[f].EXPECTED[v][0] == "line"]
    two_bugs = [(f, v) for f, v in planted if v.startswith("two")]
    assert len(planted) >= 24 and len(by_line) >= len(planted) // 2 and len(two_bugs) >= 5 and len(twins) >= 6
    families = {MODULES[f].EXPECTED[v][0] for f, v in planted}
    assert families >= {"line", "update-rule", "kink", "layout", "broadcast", "penalty", "accumulation", "ratio",
                        "one-side", "init", "unstable", "integer"}


def test_the_line_localiser_runs_a_loss_that_takes_the_weights():
    """A loss with an L2 term takes the weights (NumpySide.call_loss): the localiser must call it so, not go
    quiet on the TypeError of a three-argument call."""
    scenario = load_scenario(str(WILD / "mlp_sigmoid.py"), "as-posted")
    plain = scenario.numpy.loss

    def loss_with_weights(acts, batch, hp, weights):
        return plain(acts, batch, hp)

    scenario = dataclasses.replace(scenario, numpy=dataclasses.replace(scenario.numpy, loss=loss_with_weights))
    engine = Engine(scenario)
    engine.run(steps=getattr(MODULES["mlp_sigmoid"], "STEPS", 3))
    rule, side, function, *_ = MODULES["mlp_sigmoid"].EXPECTED["as-posted"]
    top = diagnose(engine, strict=True)[0]
    assert (top.rule, top.side, top.function) == (rule, side, function), top.cause


def test_nesterov_is_named_after_one_step():
    """With one step run classic and Nesterov momentum differ only by the first step's (1 + m): say so (it read as
    a learning rate 1.9× NumPy's)."""
    engine = Engine(load_scenario(str(WILD / "twin_momentum.py"), "classic"))
    engine.run(steps=1)
    top = diagnose(engine, strict=True)[0]
    assert (top.rule, top.side, top.function) == ("update-rule", "torch", "torch.optimizer")
    assert "(1 + momentum) = 1.9× the other's: Nesterov momentum's first step" in top.cause
    assert "sets nesterov=True" in top.cause


def _first_finding_with_numpy_update(fixture: str, update, steps: int):
    """The first finding on a wild fixture's correct variant whose NumPy update is ``update`` (a bug planted
    in its update alone)."""
    scenario = load_scenario(str(WILD / fixture), "fixed")
    scenario = dataclasses.replace(scenario, numpy=dataclasses.replace(scenario.numpy, update=update))
    engine = Engine(scenario)
    engine.run(steps=steps)
    return diagnose(engine, strict=True)[0]


def test_adam_whose_step_count_never_advances_is_named():
    """A hand-written Adam that never stores its step count: the bias correction stays at step 1's. The update
    rule names it (it said NumPy's update was none of the rules it knows)."""
    adam = MODULES["adam"]

    def stuck(p, grads, state, hp):
        adam.adam_step(p, grads, state, hp)
        state["t"] = 0  # the counter is never kept: every step is step 1 to the correction

    top = _first_finding_with_numpy_update("adam.py", stuck, steps=4)
    assert (top.rule, top.side, top.function) == ("update-rule", "numpy", "numpy.update"), top.cause
    assert "NumPy's update is Adam with its bias correction stuck at step 1" in top.cause


def test_an_update_that_never_reaches_the_weights_is_named():
    """`w = w - lr * g` in a loop rebinds a name: NumPy's weights never change. Said as such (it read as
    "learning rate 0 on the NumPy side ... NumPy's steps are -0× torch's")."""
    def rebinding(w, grads, state, hp):
        for name, weight in w.items():
            weight = weight - hp.lr * grads[name]  # the planted bug: rebinds a name

    top = _first_finding_with_numpy_update("cs231n_net.py", rebinding, steps=2)
    assert (top.rule, top.side, top.function) == ("update-rule", "numpy", "numpy.update"), top.cause
    assert "NumPy's update leaves W1 unchanged (Δw = 0 at every element in steps 0 to 1)" in top.cause
