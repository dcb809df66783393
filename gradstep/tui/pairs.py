"""Whole-tensor facts about one pair, computed lean: worst element, status of unstepped weights.

``compare.compare_tensor`` also counts ULPs and NaN/Inf for every element,
which takes over a second on a 2048 x 2048 pair; the app only needs where the
worst element is (to put the cursor there) and, for the initial weights that
no step has classified yet, a status. Both come from one chunked pass with
the same closeness rule as :func:`gradstep.compare.element_diffs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradstep.compare import Status, Tolerance, lower_precision, normwise_error, smallest_norm

_CHUNK = 1 << 18  # elements per pass: bounded temporaries however big the tensor


@dataclass(frozen=True)
class PairFacts:
    status: Status
    max_abs: float
    n_bad: int
    worst_index: tuple[int, ...] | None  # in the NumPy side's shape


def pair_facts(a: np.ndarray | None, b: np.ndarray | None, tol: Tolerance) -> PairFacts:
    """Status, greatest absolute difference, out-of-tolerance count and worst element of a pair."""
    if a is None or b is None:
        return PairFacts(Status.ONE_SIDE, 0.0, 0, None)
    a, b = np.asarray(a), np.asarray(b)
    if a.size != b.size:
        return PairFacts(Status.SHAPE, 0.0, 0, None)
    if a.size == 0:
        return PairFacts(Status.OK, 0.0, 0, None)
    if b.shape != a.shape:
        b = b.reshape(a.shape)
    # Rows of the leading axis, so a transposed (non-contiguous) side is read in place, never copied whole.
    rows_a = a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(-1, 1)
    rows_b = b.reshape(rows_a.shape)
    step = max(1, _CHUNK // rows_a.shape[1])
    best_bad, best_abs = (-1.0, 0), (-1.0, 0)
    n_bad, max_abs, nonfinite = 0, 0.0, False
    squares = np.zeros(3)  # sums of a², b², (a - b)²: the normwise error
    for start in range(0, rows_a.shape[0], step):
        chunk_a, chunk_b = rows_a[start:start + step], rows_b[start:start + step]
        squares += _squares(chunk_a, chunk_b)
        score, diff, finite_mismatch = _chunk_scores(chunk_a, chunk_b, tol)
        offset = start * rows_a.shape[1]
        bad = score > 1.0
        n_bad += int(bad.sum())
        nonfinite |= finite_mismatch
        i = int(np.argmax(diff))
        if diff.flat[i] > best_abs[0]:
            best_abs = (float(diff.flat[i]), offset + i)
        max_abs = max(max_abs, float(diff.flat[i]))
        if bad.any():
            j = int(np.argmax(score))
            if score.flat[j] > best_bad[0]:
                best_bad = (float(score.flat[j]), offset + j)
    flat = best_bad[1] if n_bad else best_abs[1]
    index = tuple(int(i) for i in np.unravel_index(flat, a.shape)) if a.ndim else ()
    status = Status.OK if not n_bad else (Status.NONFINITE if nonfinite else Status.DIVERGED)
    if status == Status.OK and _norm_out(squares, tol, lower_precision(a.dtype, b.dtype), a.size):
        status = Status.DIVERGED
    return PairFacts(status, max_abs, n_bad, index)


def _squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        d = a64 - b64
        return np.array([a64 @ a64, b64 @ b64, d @ d])


def _norm_out(squares: np.ndarray, tol: Tolerance, dtype: np.dtype, size: int) -> bool:
    """Out of the normwise tolerance (the engine's rule; NaN/Inf and subnormal pairs are not judged here)."""
    sq_a, sq_b, sq_diff = (float(x) for x in squares)
    if not np.isfinite(squares).all() or max(sq_a, sq_b) ** 0.5 <= smallest_norm(dtype, size):
        return False
    return normwise_error(sq_diff, sq_a, sq_b) > tol.norm


def _chunk_scores(a: np.ndarray, b: np.ndarray, tol: Tolerance) -> tuple[np.ndarray, np.ndarray, bool]:
    """How far out of tolerance each element is (>1: out), its absolute difference, any finite/non-finite mismatch."""
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
        diff = np.abs(a64 - b64)
        diff[same] = 0.0
        diff[np.isnan(diff)] = np.inf
        magnitude = np.maximum(np.abs(a64), np.abs(b64))
        magnitude[~np.isfinite(magnitude)] = 0.0
        allowed = tol.atol + tol.rtol * magnitude
        score = diff / np.where(allowed == 0, 1e-300, allowed)
    score[diff == 0] = 0.0
    mismatch = bool((np.isfinite(a64) != np.isfinite(b64)).any())
    return score, diff, mismatch
