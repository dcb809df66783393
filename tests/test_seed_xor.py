"""Seed 002 (scenarios/xor.py): the answer's four differences, and their cure.

The thread prints no numbers (only plots), so these tests check the behaviour the
answer describes: as posted the sides differ in init, bias, logged loss and a
factor N/2 = 2 in the gradient; fixed agrees step by step within float32
tolerance; the answer's own cure (torch lr doubled) agrees in weights and losses
while the gradients still differ by 2. Runs are checked over their first 200 of
5000 steps to stay fast.
"""

from __future__ import annotations

import numpy as np
import pytest

RTOL, ATOL = 1.3e-6, 1e-5  # torch.testing.assert_close's defaults for float32
STEPS = 200


def engine(variant: str):
    # Imported here so that collection of the other tests survives while the engine is
    # being written.
    from gradstep.engine import Engine
    from gradstep.loader import load_scenario

    return Engine(load_scenario("xor", variant=variant), device="cpu")


def scalar(a: np.ndarray) -> float:
    return np.asarray(a).item()


def assert_close(rec, keys, step: int) -> None:
    for key in keys:
        np.testing.assert_allclose(
            np.asarray(rec.numpy[key], dtype=np.float64),
            np.asarray(rec.torch[key], dtype=np.float64),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"step {step}: {key}",
        )


def test_as_posted_sides_start_from_different_weights():
    rec = engine("as-posted").step()
    # NumPy's own np.random.rand weights, float64; torch keeps nn.Linear's init, biases too.
    assert rec.numpy["before W1"].shape == (2, 5) and rec.numpy["before W2"].shape == (5, 1)
    assert rec.numpy["before W1"].dtype == np.float64
    assert np.all((rec.numpy["before W1"] >= 0) & (rec.numpy["before W1"] < 1))
    # torch keeps its own init (share_init=False) but W1/W2 still compare with 0.weight/2.weight.
    assert {"before W1", "before W2", "before 0.bias", "before 2.bias"} <= set(rec.torch)
    assert not np.allclose(rec.numpy["before W1"], rec.torch["before W1"], rtol=RTOL, atol=ATOL)
    assert not np.allclose(rec.numpy["layer2"], rec.torch["layer2"], rtol=RTOL, atol=ATOL)


def test_as_posted_logged_loss_is_not_the_mse():
    rec = engine("as-posted").step()
    layer2, y = rec.numpy["layer2"], rec.numpy["y"]
    mse = np.mean(np.square(layer2 - y))
    assert scalar(rec.numpy["mse"]) == mse
    # layer2_error.mean(): the derivative (p - t) times the question's 0.5 * MSE, averaged.
    assert scalar(rec.numpy["loss"]) == pytest.approx(np.mean(layer2 - y) * 0.5 * mse, rel=1e-12)
    assert scalar(rec.numpy["loss"]) != pytest.approx(mse)
    # torch's loss is the MSE of its own predictions.
    torch_mse = np.mean(np.square(rec.torch["layer2"].astype(np.float64) - y))
    assert scalar(rec.torch["loss"]) == pytest.approx(torch_mse, rel=RTOL)
    assert scalar(rec.torch["mse"]) == pytest.approx(torch_mse, rel=RTOL)


def test_as_posted_numpy_gradient_is_that_of_sum_over_2():
    rec = engine("as-posted").step()
    layer2, y = rec.numpy["layer2"], rec.numpy["y"]
    np.testing.assert_array_equal(rec.numpy["grad layer2"], layer2 - y)
    # MSELoss over N = 4 outputs: 2 * (p - t) / 4, half the NumPy gradient at equal p.
    expected = 2 * (rec.torch["layer2"] - y) / y.size
    np.testing.assert_allclose(rec.torch["grad layer2"], expected, rtol=RTOL, atol=ATOL)


def test_fixed_shares_torchs_init_and_agrees_for_200_steps():
    eng = engine("fixed")
    rec = eng.step()
    # The answer's torch_weights: torch's float32 init, transposed, on both sides.
    for name in ("W1", "W2"):
        assert rec.numpy[f"before {name}"].dtype == np.float32
        np.testing.assert_array_equal(rec.numpy[f"before {name}"], rec.torch[f"before {name}"])
    assert rec.numpy["layer1"].dtype == np.float64  # integer X times float32 W1
    assert not any("bias" in key for key in rec.torch)
    keys = rec.numpy.keys() & rec.torch.keys()
    assert {"layer1", "layer2", "loss", "mse", "grad W1", "grad W2", "after W1"} <= keys
    assert_close(rec, keys, 0)
    for step in range(1, STEPS):
        assert_close(eng.step(), keys, step)


def test_answer_variant_matches_weights_but_not_gradients():
    eng = engine("answer")
    for step in range(STEPS):
        rec = eng.step()
        assert_close(rec, ("layer1", "layer2", "loss", "after W1", "after W2"), step)
        # torch's lr is doubled because its gradient is half the NumPy one.
        for name in ("grad W1", "grad W2"):
            np.testing.assert_allclose(
                rec.numpy[name] / 2, rec.torch[name], rtol=RTOL, atol=ATOL, err_msg=name
            )
            if step == 0:
                assert not np.allclose(rec.numpy[name], rec.torch[name], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("variant", "first"), [("as-posted", "before W1"), ("fixed", None), ("answer", "grad W1")]
)
def test_run_first_divergence(variant: str, first: str | None):
    result = engine(variant).run(steps=STEPS)
    assert result.parity is (first is None)
    if first is not None:
        assert (result.first_divergence.step, result.first_divergence.tensor) == (0, first)
