"""Seed 001 (scenarios/neuron.py): the thread's printed numbers, both sides, every step.

The thread prints torch's prediction and loss as full reprs (exact here) and the
weights, and every NumPy value, through NumPy's 8-digit array print (compared
as printed).
"""

from __future__ import annotations

import numpy as np
import pytest

RTOL, ATOL = 1e-7, 1e-7  # torch.testing.assert_close's defaults for float64

TORCH_PRED = [-0.19999999999999998, 0.34, 0.932]
TORCH_LOSS = [1.44, 7.0756000000000006, 16.548623999999997]
TORCH_W = ["[[0.06]]", "[[0.06]]", "[[0.8736]]"]
TORCH_B = ["[0.34]", "[0.872]", "[1.6856]"]
NUMPY_PRED = ["[[-0.2]]", "[[0.22]]", "[[0.678]]"]
NUMPY_LOSS = ["[[1.44]]", "[[7.7284]]", "[[18.679684]]"]
NUMPY_W = ["[[0.18]]", "[[0.18]]", "[[0.6122]]"]
NUMPY_B = ["[[0.22]]", "[[0.498]]", "[[0.9302]]"]


def engine(variant: str):
    # Imported here so that collection of the other tests survives while the engine is
    # being written.
    from gradstep.engine import Engine
    from gradstep.loader import load_scenario

    return Engine(load_scenario("neuron", variant=variant), device="cpu")


def steps(variant: str, n: int = 3) -> list:
    eng = engine(variant)
    return [eng.step() for _ in range(n)]


def scalar(a: np.ndarray) -> float:
    return np.asarray(a).item()


def test_torch_side_prints_the_threads_numbers():
    for i, rec in enumerate(steps("as-posted")):
        assert scalar(rec.torch["output"]) == TORCH_PRED[i]
        assert scalar(rec.torch["loss"]) == TORCH_LOSS[i]
        # Printed as torch's fc.weight (1, 1) and fc.bias (1,).
        assert str(np.reshape(rec.torch["after w"], (1, 1))) == TORCH_W[i]
        assert str(np.reshape(rec.torch["after b"], (1,))) == TORCH_B[i]


def test_numpy_side_prints_the_threads_numbers():
    for i, rec in enumerate(steps("as-posted")):
        assert str(rec.numpy["output"]) == NUMPY_PRED[i]
        assert str(rec.numpy["loss"]) == NUMPY_LOSS[i]
        assert str(rec.numpy["after w"]) == NUMPY_W[i]
        assert str(rec.numpy["after b"]) == NUMPY_B[i]
        assert rec.numpy["after w"].dtype == np.float64


def test_as_posted_numpy_gradient_is_half_of_torchs():
    rec = steps("as-posted", 1)[0]
    # Same weights, same forward and loss at step 1...
    for key in ("before w", "before b", "output"):
        np.testing.assert_array_equal(rec.numpy[key], rec.torch[key])
    assert scalar(rec.numpy["loss"]) == scalar(rec.torch["loss"]) == 1.44
    # ...but the NumPy gradient misses the 2 of d(output - gt)**2.
    assert scalar(rec.numpy["grad w"]) == 1.2
    assert scalar(rec.torch["grad w"]) == 2.4
    assert scalar(rec.numpy["grad b"]) == -1.2
    assert scalar(rec.torch["grad b"]) == -2.4


def test_fixed_agrees_at_every_step_and_matches_torchs_print():
    for i, rec in enumerate(steps("fixed")):
        shared = rec.numpy.keys() & rec.torch.keys()
        assert {"output", "loss", "grad w", "grad b", "after w", "after b"} <= shared
        for key in shared:
            np.testing.assert_allclose(
                np.reshape(rec.numpy[key], np.shape(rec.torch[key])),
                rec.torch[key],
                rtol=RTOL,
                atol=ATOL,
                err_msg=f"step {i}: {key}",
            )
        assert str(rec.numpy["after w"]) == TORCH_W[i]
        assert str(np.reshape(rec.numpy["after b"], (1,))) == TORCH_B[i]


@pytest.mark.parametrize(("variant", "parity"), [("as-posted", False), ("fixed", True)])
def test_run_parity(variant: str, parity: bool):
    result = engine(variant).run()
    assert result.parity is parity
    if parity:
        assert result.first_divergence is None
    else:
        # The forward and the loss agree at the first step; the gradients part there.
        assert result.first_divergence.step == 0
        assert result.first_divergence.tensor == "grad w"
