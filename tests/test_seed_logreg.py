"""Seed 004 (scenarios/logreg.py): synthetic a9a, the thread's 15% and "30%", and L2 on the bias.

The thread's figures come from one epoch of each side alone, through the scenario's
functions (the thread's loops, without the engine's comparisons: a few seconds);
the engine runs check the divergence and the fixed variant's agreement over the
first steps.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

RTOL, ATOL = 1.3e-6, 1e-5  # torch.testing.assert_close's defaults for float32
PATH = Path(__file__).resolve().parent.parent / "scenarios" / "logreg.py"


def module():
    # The file itself, for the functions that are not part of the Scenario.
    spec = importlib.util.spec_from_file_location("logreg_under_test", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def scenario(variant: str):
    # Imported here so that collection of the other tests survives while the engine is
    # being written.
    from gradstep.loader import load_scenario

    return load_scenario("logreg", variant=variant)


def hyper(sc, dtype: torch.dtype = torch.float32):
    hp = sc.hp()
    hp.torch_dtype, hp.device = dtype, "cpu"
    return hp


def set_torch_weights(sc, model, W: np.ndarray) -> None:
    (mapping,) = [m for m in sc.mapping if m.numpy == "W"]
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, array in zip(mapping.torch_names, mapping.layout.to_torch(W), strict=True):
            params[name].copy_(torch.as_tensor(array))


# --- the data generator ---------------------------------------------------------------


def test_a9a_like_has_a9as_shape_sparsity_and_balance():
    x_train, y_train = module().a9a_like()
    assert x_train.shape == (32561, 123) and y_train.shape == (32561,)
    assert set(np.unique(x_train)) == {0, 1} and set(np.unique(y_train)) == {-1.0, 1.0}
    ones = x_train.sum(axis=1)
    # One 1 per attribute, 14 attributes, some missing: a9a has 13.87 per row.
    assert ones.max() == 14 and ones.min() >= 11
    assert ones.mean() == pytest.approx(13.87, abs=0.02)
    assert np.all(x_train.sum(axis=0) > 0)  # every column is used
    assert np.mean(y_train == 1) == pytest.approx(7841 / 32561, abs=0.005)


def test_a9a_like_is_deterministic_and_leaves_the_global_stream_alone():
    mod = module()
    np.random.seed(1)
    x1, y1 = mod.a9a_like()
    after = np.random.rand()
    np.random.seed(2)
    x2, y2 = mod.a9a_like()
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    np.random.seed(1)
    assert np.random.rand() == after
    assert not np.array_equal(mod.a9a_like(seed=2)[1], y1)


# --- the thread's functions ------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.0, 0.3, 3.0])
def test_broadcast_error_equals_the_threads_expression(scale: float):
    mod = module()
    x_train, y_train = mod.a9a_like(rows=3000)
    X = np.hstack([np.ones((len(x_train), 1)), x_train])
    Y = ((y_train + 1) // 2).reshape(-1, 1)
    W = scale * np.random.RandomState(0).randn(X.shape[1])
    # The thread's expression materializes the (3000, 3000) table; the count does not.
    assert mod.logreg_error_broadcast(X, Y, W) == mod.logreg_error(X, Y, W)
    predictions = (1 / (1 + np.exp(-X @ W)) >= 0.5).astype(int)
    assert mod.logreg_error_fixed(X, Y, W) == np.mean(predictions != Y[:, 0])


def test_numpy_side_is_the_threads_step_and_loss():
    mod, sc = module(), scenario("as-posted")
    hp, data = hyper(sc), sc.data(hyper(sc))
    W = 0.1 * np.random.RandomState(0).randn(124)
    batch = data.batch(0, 7)
    acts = sc.numpy.forward({"W": W}, batch, hp)
    expected = mod.logreg_loss(batch["x_sample"], batch["y_sample"], W, hp.l2_penalty)
    assert sc.numpy.loss(acts, batch, hp) == expected[0]
    # SGDWithMomentum.step with momentum 0: W += lr * -(gradient).
    weights = {"W": W.copy()}
    grads = sc.numpy.backward(weights, acts, batch, hp)
    sc.numpy.update(weights, grads, {}, hp)
    sigmoid = 1 / (1 + np.exp(-(batch["x_sample"] @ W)))
    gradient = (sigmoid - batch["y_sample"]) * batch["x_sample"] + hp.l2_penalty * W
    np.testing.assert_array_equal(weights["W"], W + hp.learning_rate * -gradient)


# --- the thread's figures ----------------------------------------------------------------


def one_epoch_numpy(sc) -> float:
    hp = hyper(sc)
    data, weights, state = sc.data(hp), sc.init(hp), {}
    for i in range(data.steps_per_epoch):
        batch = data.batch(0, i)
        acts = sc.numpy.forward(weights, batch, hp)
        grads = sc.numpy.backward(weights, acts, batch, hp)
        sc.numpy.update(weights, grads, state, hp)
    return sc.numpy.metrics(weights, data, hp)["error"]


def one_epoch_torch(sc) -> float:
    hp = hyper(sc)
    data, model = sc.data(hp), sc.torch.model(hp)
    X = torch.as_tensor(data.X, dtype=hp.torch_dtype)
    Y = torch.as_tensor(data.Y, dtype=hp.torch_dtype)
    for i in range(data.steps_per_epoch):
        batch = {"x_sample": X[i], "y_sample": Y[i]}
        acts = sc.torch.forward(model, batch, hp)
        sc.torch.backward(model, None, sc.torch.loss(acts, batch, hp), hp)
        sc.torch.update(model, None, {}, hp)
    return sc.torch.metrics(model, data, hp)["error"]


def test_as_posted_reproduces_the_threads_error_rates():
    sc = scenario("as-posted")
    assert sc.epochs == 1
    # "an error rate of 15%" in torch, "barely ... 30%" in NumPy.
    assert one_epoch_torch(sc) == pytest.approx(0.1506, abs=5e-4)
    assert one_epoch_numpy(sc) == pytest.approx(0.3029, abs=5e-4)


def test_fixed_error_rates_agree():
    sc = scenario("fixed")
    assert one_epoch_numpy(sc) == pytest.approx(one_epoch_torch(sc), abs=1e-4)


# --- step by step ----------------------------------------------------------------------


def gradients(variant: str, W: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' gradients of W at ``index`` from the same weights, torch in float64."""
    sc = scenario(variant)
    hp = hyper(sc, torch.float64)
    batch = sc.data(hp).batch(0, index)
    acts = sc.numpy.forward({"W": W}, batch, hp)
    numpy_grad = sc.numpy.backward({"W": W}, acts, batch, hp)["W"]
    model = sc.torch.model(hp)
    set_torch_weights(sc, model, W)
    tbatch = {n: torch.as_tensor(a, dtype=torch.float64) for n, a in batch.items()}
    tacts = sc.torch.forward(model, tbatch, hp)
    sc.torch.backward(model, None, sc.torch.loss(tacts, tbatch, hp), hp)
    bias, weight = model.linear.bias.grad.numpy(), model.linear.weight.grad.numpy()
    return numpy_grad, np.concatenate([bias, weight[0]])


@pytest.mark.parametrize("index", [0, 1, 5000])
def test_as_posted_numpy_gradient_differs_by_l2_times_w(index: int):
    hp = scenario("as-posted").hp()
    W = np.random.RandomState(index).randn(124)
    numpy_grad, torch_grad = gradients("as-posted", W, index)
    # Exactly the L2 term, the bias entry W[0] included.
    np.testing.assert_allclose(numpy_grad - torch_grad, hp.l2_penalty * W, rtol=1e-9, atol=1e-17)
    assert numpy_grad[0] - torch_grad[0] == pytest.approx(hp.l2_penalty * W[0], rel=1e-9)
    # Fixed: the same L2 on the weights on both sides, none on the bias.
    numpy_grad, torch_grad = gradients("fixed", W, index)
    np.testing.assert_allclose(numpy_grad, torch_grad, rtol=1e-12, atol=1e-17)


def test_as_posted_diverges_in_grad_w():
    from gradstep.engine import Engine

    result = Engine(scenario("as-posted"), device="cpu").run(steps=2000, until="divergence")
    # l2_penalty * W outgrows float32 tolerance once the weights have grown (step 661).
    assert result.first_divergence.tensor == "grad W"
    assert 300 < result.first_divergence.step < 2000


def test_fixed_agrees_step_by_step():
    from gradstep.engine import Engine

    eng = Engine(scenario("fixed"), device="cpu")
    rec = eng.step()
    shared = rec.numpy.keys() & rec.torch.keys()
    assert {"logits", "sigmoid", "l2_loss", "loss", "grad W", "grad logits", "after W"} <= shared
    assert eng.run(steps=3000).parity
