"""Seed 000 (scenarios/fizzbuzz.py): the answer's final numbers, and the three bugs one by one.

The answer prints, after 1000 epochs with seed 10000, the last minibatch's
``(error**2).mean()``: torch ``0.03878042474389076`` (float32) and NumPy
``0.038780463080550241`` (float64). The fixed variant reproduces NumPy's to the last
digit and torch's within float32 summation-order noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

RTOL, ATOL = 1.3e-6, 1e-5  # torch.testing.assert_close's defaults for float32
THREAD_NUMPY = 0.038780463080550241
THREAD_TORCH = 0.03878042474389076


def scenario(variant: str):
    # Imported here so that collection of the other tests survives while the engine is
    # being written.
    from gradstep.loader import load_scenario

    return load_scenario("fizzbuzz", variant=variant)


def engine(sc):
    from gradstep.engine import Engine

    return Engine(sc, device="cpu")


def scalar(a: np.ndarray) -> float:
    return np.asarray(a).item()


def test_fixed_reproduces_the_answers_final_numbers():
    eng = engine(scenario("fixed"))
    assert eng.total_steps == 1000 * 14
    result = eng.run(steps=eng.total_steps - 1)
    last = eng.step()
    assert (last.epoch, last.index) == (999, 13)
    assert scalar(last.numpy["printed"]) == pytest.approx(THREAD_NUMPY, rel=0, abs=1e-15)
    assert scalar(last.torch["printed"]) == pytest.approx(THREAD_TORCH, rel=2e-6)
    # From equal weights the sides agree at every step; free-running, float32 drifts.
    assert result.parity and result.first_divergence is None
    names = {"test accuracy", "test loss"}
    assert set(last.metrics["numpy"]) == set(last.metrics["torch"]) == names


def test_as_posted_differs_at_step_0_in_the_loss():
    rec = engine(scenario("as-posted")).step()
    # Same weights, same forward within float32...
    for key in ("before w1", "before b1", "a2", "h2", "a3", "hyp", "error"):
        np.testing.assert_allclose(rec.numpy[key], rec.torch[key], rtol=RTOL, atol=ATOL)
    # ...but torch's error.pow(2).sum() is twice NumPy's sum/2,
    assert scalar(rec.torch["loss"]) / scalar(rec.numpy["loss"]) == pytest.approx(2, rel=1e-6)
    # and torch prints error.mean() where NumPy prints (error**2).mean().
    error = rec.numpy["error"]
    assert scalar(rec.numpy["printed"]) == (error**2).mean()
    assert scalar(rec.torch["printed"]) == pytest.approx(error.mean(), rel=0, abs=1e-6)
    result = engine(scenario("as-posted")).run(steps=1)
    assert (result.first_divergence.step, result.first_divergence.tensor) == (0, "loss")


def test_as_posted_torch_b1_grad_accumulates():
    posted = scenario("as-posted")
    # The same scenario with only the zeroing of b1.grad added.
    zeroing = dataclasses.replace(
        posted, torch=dataclasses.replace(posted.torch, update=scenario("fixed").torch.update)
    )
    a, b = engine(posted), engine(zeroing)
    a0, b0, a1, b1 = a.step(), b.step(), a.step(), b.step()
    # Step 0 is the same in both, and so are the weights step 1 starts from.
    for key in ("grad w1", "grad b1", "after w1", "after b1"):
        np.testing.assert_array_equal(a0.torch[key], b0.torch[key])
    for key in ("grad w1", "grad w2", "grad b2"):
        np.testing.assert_array_equal(a1.torch[key], b1.torch[key])
    # As posted, b1.grad at step 1 is step 0's gradient plus step 1's.
    expected = a0.torch["grad b1"] + b1.torch["grad b1"]
    np.testing.assert_allclose(a1.torch["grad b1"], expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(a1.torch["grad b1"], b1.torch["grad b1"], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("fixes", "first"),
    [
        ((), (0, "loss")),
        (("torch.loss",), (0, "grad w1")),
        (("torch.loss", "numpy.backward"), (1, "grad b1")),
        (("torch.loss", "numpy.backward", "torch.update"), None),
    ],
)
def test_each_fix_moves_the_first_divergence_later(fixes: tuple[str, ...], first):
    # Each bug lives in one function: patching them one at a time walks the divergence on.
    from gradstep.scenario import Variant

    posted = scenario("as-posted")
    fixed = posted.variants["fixed"].replace
    partial = Variant("some fixes", {path: fixed[path] for path in fixes})
    sc = dataclasses.replace(posted, variants={**posted.variants, "partial": partial})
    result = engine(sc.with_variant("partial")).run(steps=30)
    if first is None:
        assert result.parity
    else:
        assert (result.first_divergence.step, result.first_divergence.tensor) == first
