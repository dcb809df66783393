"""Diagnosis of the bundled scenarios: each as-posted variant's cause first, fixed variants nothing.

The expected causes are the threads' (BRIEF.md's table): seed 001 a missing 2,
seed 003 a 1/N never applied (N = 4), seed 002 different initial weights and
nn.Linear's biases, seed 000 torch's sum() against NumPy's sum()/2 and an
unzeroed b1.grad, seed 004 the (N,) against (N, 1) broadcast in its error
rate, then an L2 penalty on all of W, bias included, on the NumPy side only.
Runs stop a few steps past the first divergence to stay fast.
"""

from __future__ import annotations

import pytest

from gradstep.diagnosis import Finding, diagnose
from gradstep.engine import Engine
from gradstep.loader import load_scenario

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def diagnosed(name: str, variant: str, steps: int) -> tuple[Engine, list[Finding]]:
    engine = Engine(load_scenario(name, variant))
    engine.run(steps=steps)
    return engine, diagnose(engine, strict=True)


def test_neuron_missing_factor_two_in_numpy_backward():
    _, findings = diagnosed("neuron", "as-posted", 3)
    top = findings[0]
    assert (top.rule, top.step, top.side, top.function) == ("ratio", 0, "numpy", "numpy.backward")
    assert top.values["ratio"] == 0.5 and {"grad w", "grad b"} <= set(top.tensors)
    assert "2·(p − t)" in top.cause


def test_linreg_mean_of_a_scalar_never_divides_by_n():
    _, findings = diagnosed("linreg", "as-posted", 5)
    top = findings[0]
    assert (top.rule, top.tensor, top.side, top.function) == ("ratio", "grad w", "numpy", "numpy.backward")
    assert top.values["ratio"] == 4 and "N = 4, the batch size" in top.cause


def test_linreg_nn_linear_bias_is_torch_only():
    _, findings = diagnosed("linreg", "nn-linear", 5)
    assert (findings[0].rule, findings[0].side, findings[0].function) == ("one-side", "torch", "torch.model")
    assert "lin.bias" in findings[0].cause


def test_linreg_numpy1_promotion_is_reported_beside_the_ratio():
    _, findings = diagnosed("linreg", "numpy1-promotion", 5)
    assert findings[0].rule == "ratio"
    promotion = next(f for f in findings if f.rule == "promotion")
    assert promotion.function == "numpy.update" and "float32 to float64" in promotion.cause


def test_xor_initial_weights_differ_then_torch_biases():
    _, findings = diagnosed("xor", "as-posted", 5)
    assert [f.rule for f in findings[:2]] == ["init", "one-side"]
    init, bias = findings[:2]
    assert init.step == 0 and {"before W1", "before W2"} == set(init.tensors) and "np.random.rand" in " ".join(
        init.evidence)
    assert "0.bias" in bias.cause and "2.bias" in bias.cause


def test_xor_answer_doubled_lr_hides_a_factor_two():
    _, findings = diagnosed("xor", "answer", 3)
    top = findings[0]
    assert top.rule == "ratio" and top.values["ratio"] == 2 and top.side == "numpy"


def test_fizzbuzz_factor_two_then_wrong_hidden_delta_then_unzeroed_b1():
    _, findings = diagnosed("fizzbuzz", "as-posted", 8)
    top = findings[0]
    assert (top.rule, top.step) == ("ratio", 0) and top.values["ratio"] == 0.5
    assert {"loss", "grad w2", "grad b2"} <= set(top.tensors)
    assert top.function == "numpy.loss / torch.loss"  # both gradients right for their own losses
    hidden = next(f for f in findings if f.rule == "gradcheck")
    assert hidden.side == "numpy" and "grad h2" in hidden.cause
    accumulation = next(f for f in findings if f.rule == "accumulation")
    assert (accumulation.tensor, accumulation.side, accumulation.step) == ("grad b1", "torch", 1)
    assert accumulation.function == "torch.update"


def test_logreg_broadcast_in_the_threads_metric_then_l2_on_all_of_w_in_the_numpy_gradient():
    engine, findings = diagnosed("logreg", "as-posted", 700)
    metric = findings[0]  # the thread's 30%: its own (N,) != (N, 1), seen by the sentinel at the diagnosed step
    assert (metric.rule, metric.side, metric.function) == ("broadcast", "numpy", "numpy.metrics")
    assert metric.file.endswith("logreg.py") and "predictions != y" in metric.cause and "(32561,)" in metric.cause
    top = findings[1]
    assert (top.rule, top.tensor, top.side, top.function) == ("penalty", "grad W", "numpy", "numpy.backward")
    assert top.step == engine.first_divergence.step
    assert top.values["l2_penalty"] == 0.0001 and top.values["k"] == pytest.approx(1e-4, rel=1e-3)
    assert "including its bias" in top.cause


@pytest.mark.slow
def test_logreg_epoch_metric_difference_is_reported():
    _, findings = diagnosed("logreg", "as-posted", 32561)
    metric = next(f for f in findings if f.rule == "metric")
    assert metric.values["numpy error"] > 2 * metric.values["torch error"]


@pytest.mark.parametrize(("name", "steps"), [("neuron", 3), ("linreg", 100), ("xor", 200), ("fizzbuzz", 40),
                                             ("logreg", 1000)])
def test_fixed_variants_get_no_finding(name, steps):
    engine, findings = diagnosed(name, "fixed", steps)
    assert engine.first_divergence is None and findings == []
