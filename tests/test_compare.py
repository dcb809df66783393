"""gradstep.compare: tolerances, one pair in full, ULP distances, and the vectorised per-step summary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradstep.compare import (
    DEFAULT_TOLERANCES,
    EXACT,
    PairSummarizer,
    Status,
    Tolerance,
    compare_tensor,
    element_diffs,
    summarize_pairs,
    tolerance_for,
    ulp_distance,
)

F32_TINY = np.finfo(np.float32).smallest_subnormal
F64_TINY = np.finfo(np.float64).smallest_subnormal


# --- tolerance_for ------------------------------------------------------------------------


def test_default_tolerances_are_torchs_elementwise_with_a_normwise_one_of_their_own():
    assert tolerance_for(np.float32, np.float32) == Tolerance(1.3e-6, 1e-5, 3e-5)
    assert tolerance_for(np.float64, np.float64) == Tolerance(1e-7, 1e-7, 1e-7)


def test_mixed_float32_float64_gets_the_looser_float32_tolerance():
    assert tolerance_for(np.float32, np.float64) == DEFAULT_TOLERANCES["float32"]
    assert tolerance_for(np.float64, np.float32) == DEFAULT_TOLERANCES["float32"]


def test_integers_are_exact_and_int_against_float_takes_the_floats():
    assert tolerance_for(np.int64, np.int32) == EXACT == Tolerance(0.0, 0.0)
    assert tolerance_for(np.int64, np.float32) == DEFAULT_TOLERANCES["float32"]


def test_user_tolerance_wins_and_loosens_the_normwise_one_only_upwards():
    assert tolerance_for(np.float32, np.float32, rtol=0.5, atol=2) == Tolerance(0.5, 2.0, 0.5)
    assert tolerance_for(np.float32, np.float32, rtol=1e-9, atol=0) == Tolerance(1e-9, 0.0, 3e-5)
    assert tolerance_for(np.int64, np.int64, rtol=0, atol=1) == Tolerance(0.0, 1.0, 0.0)


@pytest.mark.parametrize(("rtol", "atol"), [(math.nan, 1e-5), (1e-5, math.nan), (math.inf, 0.0), (-1, -1),
                                            (0.0, -1e-9), ("x", 1.0)])
def test_tolerances_that_would_pass_everything_or_nothing_are_refused(rtol, atol):
    with pytest.raises(ValueError, match="must be"):
        tolerance_for(np.float32, np.float32, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("rtol", "atol"), [(1e-3, None), (None, 1e-3)])
def test_rtol_and_atol_come_together(rtol, atol):
    with pytest.raises(ValueError, match="together"):
        tolerance_for(np.float64, np.float64, rtol=rtol, atol=atol)


# --- compare_tensor: values -----------------------------------------------------------------


def test_identical_arrays_are_ok():
    a = np.linspace(-3, 3, 12).reshape(3, 4)
    c = compare_tensor("w", a, a.copy())
    assert c.status is Status.OK
    assert c.within
    assert (c.n_bad, c.max_abs, c.max_rel, c.max_ulp, c.size) == (0, 0.0, 0.0, 0.0, 12)
    assert c.tolerance == DEFAULT_TOLERANCES["float64"]
    assert (c.numpy_shape, c.torch_shape, c.numpy_dtype, c.torch_dtype) == ((3, 4), (3, 4), "float64", "float64")


def test_one_element_out_of_tolerance_diverges_and_is_the_worst():
    a = np.full((3, 4), 2.0, dtype=np.float32)
    b = a.copy()
    b[1, 2] = 2.5  # |diff| 0.5, far beyond 1e-5 + 1.3e-6 * 2.5
    b[0, 0] = np.nextafter(np.float32(2.0), np.float32(3.0))  # one ULP off: within tolerance
    c = compare_tensor("w", a, b)
    assert c.status is Status.DIVERGED
    assert not c.within
    assert c.n_bad == 1
    assert c.worst_index == (1, 2)
    assert c.worst_numpy == np.float32(2.0) and c.worst_torch == np.float32(2.5)
    assert c.worst_numpy.dtype == np.float32 and c.worst_torch.dtype == np.float32
    assert c.max_abs == 0.5
    assert c.max_rel == 0.5 / 2.5  # relative to the larger magnitude
    assert c.max_ulp == (2.5 - 2.0) / 2.0**-22  # float32 spacing in [2, 4) is 2**-22


def test_worst_element_when_all_within_is_the_largest_difference():
    a = np.array([1.0, 2.0, 3.0])
    b = a + np.array([1e-9, -4e-9, 2e-9])
    c = compare_tensor("w", a, b)
    assert c.status is Status.OK
    assert c.worst_index == (1,)
    assert c.max_abs == pytest.approx(4e-9)


def test_worst_out_of_tolerance_is_scored_relative_to_what_is_allowed():
    # 1000 vs 1001 is the bigger absolute difference but is within rtol 1e-2;
    # 0 vs 0.5 is smaller, and out of tolerance.
    a = np.array([1000.0, 0.0])
    b = np.array([1001.0, 0.5])
    c = compare_tensor("w", a, b, rtol=1e-2, atol=1e-3)
    assert c.n_bad == 1
    assert c.worst_index == (1,)
    assert c.max_abs == 1.0


def test_tolerance_boundary_is_inclusive_and_uses_the_larger_magnitude():
    # allowed = atol + rtol * max(|a|, |b|): 0 + 0.5 * 2 = 1 = |1 - 2|, on the boundary, in both orders.
    for a, b in [(1.0, 2.0), (2.0, 1.0)]:
        c = compare_tensor("x", np.array([a]), np.array([b]), rtol=0.5, atol=0.0)
        assert c.status is Status.OK, (a, b)
    c = compare_tensor("x", np.array([1.0]), np.array([np.nextafter(2.0, 3.0)]), rtol=0.5, atol=0.0)
    assert c.status is Status.DIVERGED


def test_nan_on_both_sides_at_the_same_place_agrees_but_is_counted():
    a = np.array([1.0, np.nan, 3.0])
    b = np.array([1.0, np.nan, 3.0])
    c = compare_tensor("x", a, b)
    assert c.status is Status.OK
    assert (c.n_bad, c.max_abs, c.max_rel, c.max_ulp) == (0, 0.0, 0.0, 0.0)
    assert (c.nan_numpy, c.nan_torch, c.inf_numpy, c.inf_torch) == (1, 1, 0, 0)
    assert c.nonfinite


def test_nan_against_a_finite_value_is_nonfinite():
    a = np.array([1.0, np.nan, 3.0], dtype=np.float32)
    b = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    c = compare_tensor("x", a, b)
    assert c.status is Status.NONFINITE
    assert c.n_bad == 1
    assert c.worst_index == (1,)
    assert np.isnan(c.worst_numpy) and c.worst_torch == 2.0
    assert (c.nan_numpy, c.nan_torch) == (1, 0)
    assert c.max_abs == np.inf and c.max_ulp == np.inf


def test_nan_in_different_places_is_nonfinite_twice():
    c = compare_tensor("x", np.array([np.nan, 1.0]), np.array([1.0, np.nan]))
    assert c.status is Status.NONFINITE
    assert c.n_bad == 2
    assert (c.nan_numpy, c.nan_torch) == (1, 1)


def test_inf_against_finite_is_nonfinite():
    c = compare_tensor("x", np.array([1.0, 2.0]), np.array([1.0, -np.inf]))
    assert c.status is Status.NONFINITE
    assert (c.n_bad, c.worst_index, c.inf_torch, c.inf_numpy) == (1, (1,), 1, 0)


def test_equal_infinities_agree():
    a = np.array([np.inf, -np.inf, 1.0])
    c = compare_tensor("x", a, a.copy())
    assert c.status is Status.OK
    assert (c.n_bad, c.max_abs, c.max_rel, c.max_ulp) == (0, 0.0, 0.0, 0.0)
    assert (c.inf_numpy, c.inf_torch) == (2, 2)


def test_opposite_infinities_mismatch():
    c = compare_tensor("x", np.array([np.inf]), np.array([-np.inf]))
    assert c.n_bad == 1
    assert c.max_abs == np.inf
    # Neither side is finite there, so this is a divergence rather than a NaN/Inf-against-finite.
    assert c.status is Status.DIVERGED


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_zero_equals_zero(dtype):
    c = compare_tensor("x", np.array([-0.0, 0.0], dtype=dtype), np.array([0.0, -0.0], dtype=dtype))
    assert c.status is Status.OK
    assert (c.n_bad, c.max_abs, c.max_rel, c.max_ulp) == (0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(("dtype", "tiny"), [(np.float32, F32_TINY), (np.float64, F64_TINY)])
def test_subnormal_against_zero_is_one_ulp_and_within_atol(dtype, tiny):
    c = compare_tensor("x", np.array([tiny], dtype=dtype), np.array([0.0], dtype=dtype))
    assert c.status is Status.OK
    assert c.max_ulp == 1.0
    assert c.max_abs == float(tiny)
    assert c.max_rel == 1.0  # 0 against x: all of x is the difference


def test_relative_difference_with_zero_denominators():
    c = compare_tensor("x", np.array([0.0, 0.0]), np.array([0.0, 0.0]))
    assert c.max_rel == 0.0
    c = compare_tensor("x", np.array([0.0, 0.0]), np.array([0.0, -3.0]))
    assert c.max_rel == 1.0
    assert c.max_abs == 3.0


# --- compare_tensor: dtypes and shapes ------------------------------------------------------


def test_mixed_dtypes_measure_ulp_in_float32():
    one_up = np.nextafter(np.float32(1.0), np.float32(2.0))
    c = compare_tensor("x", np.array([1.0], dtype=np.float64), np.array([one_up], dtype=np.float32))
    assert c.max_ulp == 1.0
    assert c.max_abs == 2.0**-23
    assert c.tolerance == DEFAULT_TOLERANCES["float32"]
    assert c.status is Status.OK
    assert c.worst_numpy.dtype == np.float64 and c.worst_torch.dtype == np.float32
    assert (c.numpy_dtype, c.torch_dtype) == ("float64", "float32")


def test_mixed_dtypes_float64_rounding_to_the_same_float32_is_zero_ulp():
    # float64 0.1 and float32 0.1 differ by ~1.5e-9 but are the same float32.
    c = compare_tensor("x", np.array([0.1]), np.array([0.1], dtype=np.float32))
    assert c.max_ulp == 0.0
    assert 0 < c.max_abs < 2e-9
    assert c.status is Status.OK


def test_int_against_float():
    a = np.array([1, 2, 3], dtype=np.int64)
    c = compare_tensor("x", a, np.array([1.0, 2.0, 3.0]))
    assert c.status is Status.OK
    assert (c.nan_numpy, c.inf_numpy) == (0, 0)
    c = compare_tensor("x", a, np.array([1.0, 2.0, 3.00001]))
    assert c.status is Status.DIVERGED
    assert c.worst_index == (2,)


def test_ints_compare_exactly():
    c = compare_tensor("n", np.array([4, 5, 6]), np.array([4, 5, 7]))
    assert c.tolerance == EXACT
    assert c.status is Status.DIVERGED
    assert (c.n_bad, c.max_abs, c.worst_index) == (1, 1.0, (2,))


def test_large_ints_compare_exactly():
    big = 2**53
    c = compare_tensor("n", np.array([big + 1], dtype=np.int64), np.array([big], dtype=np.int64))
    assert c.status is Status.DIVERGED
    assert c.n_bad == 1


@pytest.mark.parametrize("side", ["numpy", "torch"])
def test_one_side_missing_names_the_side(side):
    arr = np.zeros((2, 3), dtype=np.float32)
    c = compare_tensor("grad w", arr if side == "numpy" else None, arr if side == "torch" else None)
    assert c.status is Status.ONE_SIDE
    assert c.only_on == side
    assert side in c.note and "grad w" in c.note
    assert c.size == 6
    shapes = {"numpy": c.numpy_shape, "torch": c.torch_shape}
    dtypes = {"numpy": c.numpy_dtype, "torch": c.torch_dtype}
    other = "torch" if side == "numpy" else "numpy"
    assert shapes[side] == (2, 3) and shapes[other] is None
    assert dtypes[side] == "float32" and dtypes[other] is None
    assert not c.within


def test_column_against_flat_vector_is_compared_with_a_note():
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([[1.0], [2.0], [3.5]])
    c = compare_tensor("b", a, b)
    assert c.status is Status.DIVERGED
    assert (c.n_bad, c.max_abs, c.worst_index) == (1, 0.5, (2,))
    assert c.worst_torch == 3.5
    assert "(3,)" in c.note and "(3, 1)" in c.note
    assert (c.numpy_shape, c.torch_shape) == ((3,), (3, 1))


def test_column_against_flat_vector_that_agrees_is_ok_with_a_note():
    c = compare_tensor("b", np.arange(3.0), np.arange(3.0).reshape(3, 1))
    assert c.status is Status.OK
    assert c.note


def test_matrix_against_vector_is_a_shape_mismatch():
    c = compare_tensor("w", np.zeros((3, 3)), np.zeros(3))
    assert c.status is Status.SHAPE
    assert "(3, 3)" in c.note and "(3,)" in c.note
    assert c.worst_index is None
    assert not c.within


def test_zero_d_arrays():
    c = compare_tensor("loss", np.array(1.5), np.array(1.5))
    assert (c.status, c.size, c.worst_index) == (Status.OK, 1, ())
    c = compare_tensor("loss", np.float64(1.0), np.float64(2.0))
    assert c.status is Status.DIVERGED
    assert (c.n_bad, c.max_abs, c.max_rel, c.worst_index) == (1, 1.0, 0.5, ())
    assert c.worst_numpy == 1.0 and c.worst_torch == 2.0


def test_zero_d_against_one_element():
    c = compare_tensor("loss", np.array([[1.44]]), np.array(1.44))
    assert c.status is Status.OK
    assert c.note


def test_empty_arrays():
    c = compare_tensor("e", np.zeros((0, 3)), np.zeros((0, 3)))
    assert (c.status, c.size, c.n_bad, c.worst_index) == (Status.OK, 0, 0, None)
    c = compare_tensor("e", np.zeros((0,)), np.zeros((0, 3), dtype=np.float32))
    assert c.status is Status.OK


# --- ulp_distance ---------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "tiny"), [(np.float32, F32_TINY), (np.float64, F64_TINY)])
def test_ulp_distance_across_zero(dtype, tiny):
    assert ulp_distance(np.array([-tiny]), np.array([tiny]), dtype)[0] == 2.0
    assert ulp_distance(np.array([-tiny]), np.array([0.0]), dtype)[0] == 1.0
    assert ulp_distance(np.array([-0.0]), np.array([0.0]), dtype)[0] == 0.0


def test_ulp_distance_counts_representable_values():
    one = np.float32(1.0)
    up3 = np.nextafter(np.nextafter(np.nextafter(one, np.float32(2)), np.float32(2)), np.float32(2))
    assert ulp_distance(np.array([one]), np.array([up3]), np.float32)[0] == 3.0
    # Across a binade: the largest float32 below 1 and 1 are neighbours.
    below = np.nextafter(one, np.float32(0))
    assert ulp_distance(np.array([below]), np.array([one]), np.float32)[0] == 1.0
    # -1 and 1: every float32 between them, 2 * bits(1.0).
    assert ulp_distance(np.array([-1.0]), np.array([1.0]), np.float32)[0] == 2 * 0x3F800000


def test_ulp_distance_nan():
    d = ulp_distance(np.array([np.nan, np.nan, 1.0]), np.array([np.nan, 1.0, np.nan]), np.float64)
    assert list(d) == [0.0, np.inf, np.inf]


# --- PairSummarizer / summarize_pairs ------------------------------------------------------


def random_pairs(rng: np.random.RandomState, n_pairs: int = 12):
    """Pairs of varied sizes (0-d and empty among them), dtypes and tolerances, some out of tolerance."""
    shapes = [(), (0,), (1,), (7,), (3, 4), (0, 2), (50,), (2, 3, 5), (), (129,), (4, 1), (1000,)]
    numpy_values, torch_values, tolerances = [], [], []
    for i in range(n_pairs):
        shape = shapes[i % len(shapes)]
        dtype_a = np.float32 if i % 3 == 0 else np.float64
        dtype_b = np.float32 if i % 4 == 0 else np.float64
        scale = 10.0 ** rng.randint(-6, 6)
        a = rng.standard_normal(shape) * scale
        noise = rng.standard_normal(shape) * 10.0 ** rng.uniform(-9, -3, size=shape)
        b = a * (1 + noise)
        zeros = rng.uniform(size=shape) < 0.1
        a = np.where(zeros, 0.0, a)
        b = np.where(zeros & (rng.uniform(size=shape) < 0.5), 0.0, b)
        numpy_values.append(np.asarray(a, dtype=dtype_a))
        torch_values.append(np.asarray(b, dtype=dtype_b))
        tolerances.append(Tolerance(10.0 ** rng.uniform(-8, -4), 10.0 ** rng.uniform(-9, -5)))
    return numpy_values, torch_values, tolerances


def assert_summary_matches_compare_tensor(summary, numpy_values, torch_values, tolerances):
    assert len(summary.max_abs) == len(numpy_values)
    for i, (a, b, tol) in enumerate(zip(numpy_values, torch_values, tolerances, strict=True)):
        c = compare_tensor(f"k{i}", a, b, tol.rtol, tol.atol)
        assert summary.n_bad[i] == c.n_bad, i
        assert summary.max_abs[i] == c.max_abs, i
        np.testing.assert_allclose(summary.max_rel[i], c.max_rel, rtol=1e-12, atol=0, err_msg=str(i))


def test_summary_agrees_with_compare_tensor_on_random_pairs():
    rng = np.random.RandomState(2024)
    for _ in range(5):
        numpy_values, torch_values, tolerances = random_pairs(rng)
        summary = summarize_pairs(numpy_values, torch_values, tolerances)
        assert_summary_matches_compare_tensor(summary, numpy_values, torch_values, tolerances)
        assert summary.finite


def test_random_pairs_exercise_both_outcomes():
    # Guards the test above: the random pairs must contain some out-of-tolerance elements and some clean pairs.
    numpy_values, torch_values, tolerances = random_pairs(np.random.RandomState(2024))
    summary = summarize_pairs(numpy_values, torch_values, tolerances)
    assert summary.n_bad.sum() > 0
    assert (summary.n_bad == 0).sum() > 2


def test_summarizer_is_reusable_across_steps():
    rng = np.random.RandomState(3)
    numpy_values, torch_values, tolerances = random_pairs(rng)
    summarizer = PairSummarizer([int(np.size(v)) for v in numpy_values], tolerances)
    assert summarizer.matches([int(np.size(v)) for v in numpy_values])
    assert not summarizer.matches([1, 2])
    for _ in range(3):
        torch_values = [np.asarray(b + rng.standard_normal(np.shape(b)) * 1e-6, dtype=b.dtype) for b in torch_values]
        summary = summarizer.summarize(numpy_values, torch_values)
        assert_summary_matches_compare_tensor(summary, numpy_values, torch_values, tolerances)


def test_a_subset_of_pairs_is_summarized_with_its_own_tolerances_and_agrees():
    rng = np.random.RandomState(11)
    numpy_values, torch_values, tolerances = random_pairs(rng)
    whole = PairSummarizer([int(np.size(v)) for v in numpy_values], tolerances)
    picked = [1, 4, 6, 9, 11]
    subset = [[values[i] for i in picked] for values in (numpy_values, torch_values, tolerances)]
    for _ in range(2):  # alternating with the whole, as the engine does: free-running, then local
        assert_summary_matches_compare_tensor(whole.summarize(numpy_values, torch_values), numpy_values,
                                              torch_values, tolerances)
        assert_summary_matches_compare_tensor(whole.summarize(subset[0], subset[1], picked), *subset)


def test_a_carried_row_is_taken_as_it_is():
    a, b = np.ones(3), np.ones(3) * 2
    whole = PairSummarizer([3, 3], [EXACT, EXACT])
    known = whole.summarize([a], [b], [0]).rows[0]
    summary = whole.summarize([a, a], [a, b], carried={0: known})
    assert summary.max_abs.tolist() == [1.0, 1.0]  # the first pair's row is the carried one, not a == a


def test_summary_with_one_shared_tolerance():
    rng = np.random.RandomState(5)
    numpy_values, torch_values, _ = random_pairs(rng)
    tolerances = [Tolerance(1e-6, 1e-7)] * len(numpy_values)
    summary = summarize_pairs(numpy_values, torch_values, tolerances)
    assert_summary_matches_compare_tensor(summary, numpy_values, torch_values, tolerances)


def test_summary_of_nothing_and_of_only_empty_pairs():
    s = summarize_pairs([], [], [])
    assert s.max_abs.shape == (0,) and s.finite
    s = summarize_pairs([np.zeros(0), np.zeros((2, 0))], [np.zeros(0), np.zeros((2, 0))], [EXACT, EXACT])
    assert list(s.n_bad) == [0, 0] and list(s.max_abs) == [0.0, 0.0] and s.finite


NONFINITE_PAIRS = [
    # (numpy, torch): NaN agreeing, NaN against finite, equal and opposite infinities, inf against finite.
    (np.array([1.0, np.nan, 2.0]), np.array([1.0, np.nan, 2.5])),
    (np.array([1.0, np.nan], dtype=np.float32), np.array([1.0, 3.0], dtype=np.float32)),
    (np.array([np.inf, -np.inf, 0.5]), np.array([np.inf, -np.inf, 0.5])),
    (np.array([np.inf, 1.0]), np.array([-np.inf, 1.0])),
    (np.array(np.inf), np.array(7.0)),
    (np.array([np.nan, np.inf]), np.array([np.inf, np.nan])),
]


def test_summary_with_nan_and_inf_agrees_with_compare_tensor():
    rng = np.random.RandomState(11)
    numpy_values, torch_values, tolerances = random_pairs(rng)
    for i, (a, b) in enumerate(NONFINITE_PAIRS):
        at = 2 * i + 1  # interleave with finite pairs
        numpy_values.insert(at, a)
        torch_values.insert(at, b)
        tolerances.insert(at, Tolerance(1e-5, 1e-6))
    summary = summarize_pairs(numpy_values, torch_values, tolerances)
    assert not summary.finite
    assert_summary_matches_compare_tensor(summary, numpy_values, torch_values, tolerances)


@pytest.mark.parametrize("index", range(len(NONFINITE_PAIRS)))
def test_summary_not_finite_for_any_nan_or_inf(index):
    a, b = NONFINITE_PAIRS[index]
    clean = np.ones(4)
    summary = summarize_pairs([clean, a], [clean, b], [EXACT, EXACT])
    assert not summary.finite
    summary = summarize_pairs([clean, b], [clean, a], [EXACT, EXACT])  # sides swapped
    assert not summary.finite


def test_summary_of_nan_agreeing_everywhere_is_not_finite_but_has_no_bad():
    a = np.array([np.nan, np.nan])
    summary = summarize_pairs([a], [a.copy()], [EXACT])
    assert not summary.finite
    assert (summary.n_bad[0], summary.max_abs[0]) == (0, 0.0)


def test_summary_stays_finite_when_the_sums_overflow():
    big = np.full(3, np.finfo(np.float64).max)
    summary = summarize_pairs([big], [big.copy()], [EXACT])
    assert summary.finite
    assert (summary.n_bad[0], summary.max_abs[0], summary.max_rel[0]) == (0, 0.0, 0.0)


def test_summary_of_opposite_infinities_cancelling_in_the_sums_is_not_finite():
    # sum(a) + sum(b) = inf + -inf = nan: still has to be seen as non-finite.
    summary = summarize_pairs([np.array([np.inf])], [np.array([-np.inf])], [EXACT])
    assert not summary.finite
    assert summary.n_bad[0] == 1


def test_summary_compares_flat_against_column_like_compare_tensor():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([[1.0], [2.5], [3.0]])
    summary = summarize_pairs([a], [b], [Tolerance(1e-7, 1e-7)])
    assert (summary.n_bad[0], summary.max_abs[0]) == (1, 0.5)
    assert_summary_matches_compare_tensor(summary, [a], [b], [Tolerance(1e-7, 1e-7)])


def test_summary_compares_flat_against_column_with_nan_like_compare_tensor():
    a, b = np.array([1.0, np.nan, 3.0]), np.array([[1.0], [np.nan], [3.0]])
    tol = Tolerance(1e-7, 1e-7)
    summary = summarize_pairs([a], [b], [tol])
    assert compare_tensor("x", a, b, tol.rtol, tol.atol).n_bad == 0
    assert (summary.n_bad[0], summary.max_abs[0]) == (0, 0.0)


def test_summary_relative_difference_of_float64_subnormals():
    a, b = np.array([0.0, 3 * F64_TINY]), np.array([F64_TINY, F64_TINY])
    summary = summarize_pairs([a], [b], [EXACT])
    assert compare_tensor("x", a, b, 0.0, 0.0).max_rel == 1.0
    assert summary.max_rel[0] == 1.0


def test_float64_ulp_distances_are_exact_integers():
    one = np.array([1.0])
    assert ulp_distance(one, np.nextafter(one, 2.0), np.dtype(np.float64))[0] == 1.0
    assert ulp_distance(one, one + 6 * 2.0**-52, np.dtype(np.float64))[0] == 6.0
    big = np.array([1e300])
    assert ulp_distance(-big, big, np.dtype(np.float64))[0] > 0  # opposite signs never overflow


# --- the kernel against the elementwise rule --------------------------------------------------


def _layouts(rng: np.random.RandomState):
    """Pairs the kernel meets: float32/float64/mixed, integers, a side stored transposed, NaN/Inf, ties."""
    a = rng.standard_normal((37, 70))
    noisy = a + rng.standard_normal(a.shape) * 1e-6
    noisy[3, 5], noisy[10, 1], a[4, 4] = np.nan, np.inf, np.nan
    yield a, noisy, Tolerance(1e-6, 1e-7)
    yield a.astype(np.float32), np.asfortranarray(noisy), Tolerance(1.3e-6, 1e-5)  # torch's layout, transposed
    yield np.ascontiguousarray(a.T).T, noisy, Tolerance(1e-6, 1e-7)
    ints = rng.randint(-5, 5, size=(8, 9))
    yield ints, ints + (rng.rand(8, 9) > 0.8), EXACT
    big = np.array([2**53 + 1, 7], dtype=np.int64)
    yield big, np.array([2**53, 7], dtype=np.int64), EXACT
    tie = np.zeros((5, 5))
    yield tie, tie + (np.arange(25).reshape(5, 5) % 7 == 3), EXACT  # equal worst elements: the first in C order
    yield rng.standard_normal((3, 4, 5)).astype(np.float32), rng.standard_normal((3, 4, 5)), Tolerance(0.1, 0.1)


def test_the_kernel_agrees_with_the_elementwise_rule_everywhere():
    from gradstep.kernel import GREATEST, INF_A, INF_B, MAX_ABS, MAX_REL, N_BAD, NAN_A, NAN_B, SQ_DIFF, WORST, scan_pair

    rng = np.random.RandomState(3)
    for a, b, tol in _layouts(rng):
        row = scan_pair(a, b, tol.rtol, tol.atol)
        d = element_diffs(a, b, tol)
        assert row[MAX_ABS] == d.abs.max() and row[MAX_REL] == d.rel.max() and row[N_BAD] == d.bad.sum()
        expected = int(np.argmax(d.score)) if d.bad.any() else int(np.argmax(d.abs))
        assert row[WORST] == expected and row[GREATEST] == int(np.argmax(d.abs))
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert (row[NAN_A], row[NAN_B]) == (np.isnan(a64).sum(), np.isnan(b64).sum())
        assert (row[INF_A], row[INF_B]) == (np.isinf(a64).sum(), np.isinf(b64).sum())
        finite = np.isfinite(d.abs)
        assert row[SQ_DIFF] == pytest.approx(float((d.abs[finite] ** 2).sum())) or not finite.all()


def _finite_pairs(rng: np.random.RandomState):
    """Finite pairs, within tolerance or not: the kernel's vectorised path."""
    a = rng.standard_normal((150, 200)).astype(np.float32)
    noisy = (a * (1 + 1e-7 * rng.standard_normal(a.shape))).astype(np.float32)
    yield a, noisy  # float32 noise in most elements
    yield a, np.ascontiguousarray(noisy.T).T  # torch's layout
    yield a, a.copy()  # equal: greatest difference 0 at index 0
    yield a.ravel()[:1000].astype(np.float64), noisy.ravel()[:1000]  # a vector, mixed precision
    tie = np.zeros((130, 140))
    other = tie.copy()
    other[129, 2] = other[70, 139] = other[70, 5] = 1e-9  # the same greatest difference in three tiles
    yield tie, other
    tiny = np.full((3, 3), 5e-324)
    yield tiny, tiny * 2  # subnormal
    off = a.copy()
    off[149, 3] = off[80, 150] = off[80, 70] = 9.0  # out of tolerance, the same score in three tiles
    yield a, off
    yield a, (a * (1 + 0.5 * rng.standard_normal(a.shape))).astype(np.float32)  # most elements out
    yield np.ascontiguousarray(off.T).T, a  # out of tolerance, one side in torch's layout


def test_the_vectorised_path_gives_the_exact_paths_row():
    from gradstep._scan import _exact_scan, _fast_scan
    from gradstep.kernel import GREATEST, MAX_ABS, MAX_REL, N_BAD, WORST, as_matrix

    rng = np.random.RandomState(5)
    for tol in (Tolerance(1e-5, 1e-8), Tolerance(0.0, 0.0)):  # the second: any difference out, scores infinite
        for a, b in _finite_pairs(rng):
            left, right = as_matrix(a), as_matrix(b.reshape(a.shape))
            exact = np.empty(13)
            _exact_scan(left, right, tol.rtol, tol.atol, False, exact)
            d = element_diffs(a, b.reshape(a.shape), tol)
            for expect_bad in (False, True):  # the row does not depend on the hint
                fast = np.full(13, -1.0)
                assert _fast_scan(left, right, tol.rtol, tol.atol, fast, expect_bad)  # taken: finite
                # Every field to the bit, the sums of squares too: they are added in the same order whatever
                # the layout or the machine's vector width, so a pair's normwise error never depends on either.
                assert fast.tolist() == exact.tolist()
                assert fast[MAX_ABS] == d.abs.max() and fast[MAX_REL] == d.rel.max() and fast[N_BAD] == d.bad.sum()
                score = np.where(d.bad, d.score if tol.atol else np.inf, -1.0)  # nothing allowed: infinitely out
                worst = int(np.argmax(score)) if d.bad.any() else int(np.argmax(d.abs))
                assert fast[WORST] == worst and fast[GREATEST] == int(np.argmax(d.abs))
    a = np.ones((70, 70))
    b = a.copy()
    b[69, 69] = np.nan  # NaN or Inf: the exact path's, row untouched
    assert not _fast_scan(a, b, 1e-5, 1e-8, np.empty(13))
    b[69, 69] = np.inf
    assert not _fast_scan(a, b, 1e-5, 1e-8, np.empty(13))
