"""What the torch side records: arrays of their own in the NumPy side's layout, compared as they come.

A transposed weight (``nn.Linear``'s ``weight`` against ``W`` of NumPy's ``x @ W``)
is recorded C-contiguous in NumPy's layout, copied once (by torch, in blocks)
and never again: the next step's ``before`` is this step's ``after``.
"""

import dataclasses
from pathlib import Path

import numpy as np

from gradstep import keys
from gradstep.engine import Engine
from gradstep.loader import load_scenario

MLP = str(Path(__file__).parent / "fixtures" / "relu_mlp.py")


def test_a_transposed_weight_is_recorded_in_numpy_layout_and_outlives_the_next_update():
    engine = Engine(load_scenario(MLP, "fixed"))
    first = engine.step()
    weight = engine.live.torch.params["fcs.0.weight"]
    for key in (keys.grad("W1"), keys.after("W1"), keys.update("W1")):
        recorded = first.torch[key]
        assert recorded.shape == (196, 48) and recorded.flags.c_contiguous, key
        assert not np.shares_memory(recorded, weight.detach().numpy()), key
    after, grad = first.torch[keys.after("W1")].copy(), first.torch[keys.grad("W1")].copy()
    np.testing.assert_array_equal(after, weight.detach().numpy().T)
    second = engine.step()  # updates the parameter, and its gradient in place
    np.testing.assert_array_equal(first.torch[keys.after("W1")], after)
    np.testing.assert_array_equal(first.torch[keys.grad("W1")], grad)
    # The next step starts from what this one ended with: the same array, not a second copy.
    assert second.torch[keys.before("W1")] is first.torch[keys.after("W1")]


def test_the_comparison_of_a_fortran_ordered_record_is_that_of_a_contiguous_one():
    """A layout may hand over a transposed view (an activation mapped TRANSPOSED is not copied)."""
    engine = Engine(load_scenario(MLP, "as-posted"))  # NumPy's rate is 0.95x torch's from step 1 on
    engine.step()
    record = engine.step()
    for key in (keys.after("W1"), keys.update("W2"), keys.grad("W1")):
        transposed = {**record.torch, key: np.asfortranarray(record.torch[key])}
        assert not transposed[key].flags.c_contiguous
        assert engine.compare_pair(record, key) == engine.compare_pair(
            dataclasses.replace(record, torch=transposed), key), key
    assert engine.compare_pair(record, keys.after("W1")).max_abs > 0


def test_a_contiguous_copy_owns_its_memory_whatever_the_strides():
    from gradstep.sides import _contiguous_copy

    base = np.arange(512 * 256, dtype=np.float32).reshape(512, 256)
    for view in (base.T, base[::-1].T, base[:, ::2].T, base, base.astype(">f4").T):
        copy = _contiguous_copy(view)
        assert copy.flags.c_contiguous, view.strides
        assert not np.shares_memory(copy, base)
        np.testing.assert_array_equal(copy, view)
