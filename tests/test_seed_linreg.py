"""Seed 003 (scenarios/linreg.py): the answer's printed first step, and NEP 50.

The answer prints, for step 1: loss 30.0 on both sides, grad -30.0 (torch) and
-120.0 (NumPy), and ``w`` with ``:.7f``: torch 0.3000000, NumPy 1.2000000. The
NumPy value was printed under NumPy 1.x; under NumPy 2 (NEP 50) the update stays
float32 and prints 1.1999999, which as-posted reproduces; numpy1-promotion
reproduces the 1.x value.
"""

from __future__ import annotations

import numpy as np
import pytest

RTOL, ATOL = 1.3e-6, 1e-5  # torch.testing.assert_close's defaults for float32

numpy2 = pytest.mark.skipif(
    np.lib.NumpyVersion(np.__version__) < "2.0.0", reason="as-posted follows NEP 50 (NumPy 2)"
)


def engine(variant: str):
    # Imported here so that collection of the other tests survives while the engine is
    # being written.
    from gradstep.engine import Engine
    from gradstep.loader import load_scenario

    return Engine(load_scenario("linreg", variant=variant), device="cpu")


def first_step(variant: str):
    return engine(variant).step()


def scalar(a: np.ndarray) -> float:
    return np.asarray(a).item()


def assert_sides_agree(rec, step: int) -> None:
    shared = rec.numpy.keys() & rec.torch.keys()
    assert {"y_pred", "loss", "grad w", "after w"} <= shared
    for key in shared:
        np.testing.assert_allclose(
            np.asarray(rec.numpy[key], dtype=np.float64),
            np.asarray(rec.torch[key], dtype=np.float64),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"step {step}: {key}",
        )


@numpy2
def test_as_posted_first_step_under_numpy2():
    rec = first_step("as-posted")
    np.testing.assert_array_equal(rec.numpy["y_pred"], [0.0, 0.0, 0.0, 0.0])
    assert scalar(rec.numpy["loss"]) == scalar(rec.torch["loss"]) == 30.0
    assert scalar(rec.torch["grad w"]) == -30.0
    assert scalar(rec.numpy["grad w"]) == -120.0  # np.dot(...).mean(): no 1/N
    assert f"{scalar(rec.torch['after w']):.7f}" == "0.3000000"
    # NEP 50: 0.01 * float32(-120.0) stays float32, so w is float32(1.2) rounded down.
    assert np.asarray(rec.numpy["after w"]).dtype == np.float32
    assert f"{scalar(rec.numpy['after w']):.7f}" == "1.1999999"


def test_numpy1_promotion_reproduces_the_printed_value():
    rec = first_step("numpy1-promotion")
    assert scalar(rec.numpy["grad w"]) == -120.0
    assert np.asarray(rec.numpy["after w"]).dtype == np.float64
    assert f"{scalar(rec.numpy['after w']):.7f}" == "1.2000000"
    # NumPy 1.x kept the forward in float32: a float64 scalar did not upcast the array.
    eng = engine("numpy1-promotion")
    eng.step()
    y_pred = eng.step().numpy["y_pred"]
    assert np.asarray(y_pred).dtype == np.float32
    assert str(y_pred) == "[1.2       2.4       3.6000001 4.8      ]"


def test_fixed_agrees_at_every_step():
    eng = engine("fixed")
    rec = eng.step()
    assert scalar(rec.numpy["grad w"]) == scalar(rec.torch["grad w"]) == -30.0
    assert f"{scalar(rec.numpy['after w']):.7f}" == "0.3000000"
    assert_sides_agree(rec, 0)
    for step in range(1, 100):
        assert_sides_agree(eng.step(), step)
    assert np.asarray(rec.numpy["after w"]).dtype == np.float32


def test_nn_linear_bias_is_torch_only_and_diverges():
    rec = first_step("nn-linear")
    # Same w (the mapping sets lin.weight to NumPy's 0.0); the bias exists on one side.
    assert scalar(rec.torch["before w"]) == scalar(rec.numpy["before w"]) == 0.0
    assert "before lin.bias" in rec.torch and "grad lin.bias" in rec.torch
    assert not any("lin.bias" in key for key in rec.numpy)
    # The bias shifts torch's prediction from the first forward on.
    bias = scalar(rec.torch["before lin.bias"])
    assert bias != 0.0
    np.testing.assert_allclose(rec.torch["y_pred"], np.full(4, bias), rtol=RTOL, atol=0)
    np.testing.assert_array_equal(rec.numpy["y_pred"], np.zeros(4))


@pytest.mark.parametrize(
    ("variant", "first"),
    [("as-posted", "grad w"), ("numpy1-promotion", "grad w"), ("nn-linear", "y_pred")],
)
def test_run_diverges_at_the_first_step(variant: str, first: str):
    result = engine(variant).run()
    assert result.parity is False
    assert result.first_divergence.step == 0
    assert result.first_divergence.tensor == first


def test_fixed_run_has_parity():
    result = engine("fixed").run()
    assert result.parity is True
    assert result.first_divergence is None
