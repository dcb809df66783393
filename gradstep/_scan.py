"""The compiled loop of :mod:`gradstep.kernel` (numba): imported only when a comparison first runs."""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

TILE = 64  # 64 x 64 elements of each side: a tile of both fits in L1, whichever layout each side has


@numba.njit(cache=True, nogil=True)
def scan(a: Any, b: Any, rtol: float, atol: float, exact_int: bool, row: Any) -> None:  # pragma: no cover
    """Write the summary row of 2-D ``a`` against ``b`` into ``row`` (see gradstep.kernel for its fields).

    Most pairs are finite and within tolerance: for them a branch-free pass gives the row at a third of
    the cost; anything else (a NaN or Inf, an element out of tolerance, integers) takes the exact pass.
    """
    if exact_int or not _fast_scan(a, b, rtol, atol, row):
        _exact_scan(a, b, rtol, atol, exact_int, row)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _finite(a: Any, b: Any) -> bool:  # pragma: no cover
    """Whether every element of both is finite: x - x is 0 for a number, NaN for NaN and Inf."""
    rows, cols = a.shape
    for r0 in range(0, rows, TILE):
        r1 = min(rows, r0 + TILE)
        total = 0.0
        for c0 in range(0, cols, TILE):
            c1 = min(cols, c0 + TILE)
            for i in range(r0, r1):
                for j in range(c0, c1):
                    x = np.float64(a[i, j])
                    y = np.float64(b[i, j])
                    total += (x - x) + (y - y)
        if total != total:
            return False
    return True


# Only on finite elements (checked first): no NaN or Inf to keep track of, no branch an element. The sums of
# squares are added in the exact pass's order (no "reassoc"): vectorised sums would round by the layout and
# the machine's vector width, and a pair's normwise error must depend on neither.
@numba.njit(cache=True, nogil=True, fastmath={"nnan", "ninf", "nsz"})
def _fast_sums(a: Any, b: Any, rtol: float, atol: float, tile_max: Any) -> Any:  # pragma: no cover
    rows, cols = a.shape
    sq_a = sq_b = sq_d = 0.0
    n_bad = 0
    # The maxima are taken over the bits: a float's bits, read as an int64, order non-negative floats as
    # the floats do, and an integer maximum compiles without a branch where a float one (NaN rules) does not.
    diffs, rels, bits = np.empty(TILE), np.empty(TILE), np.empty(1)
    diff_bits, rel_bits, as_bits = diffs.view(np.int64), rels.view(np.int64), bits.view(np.int64)
    max_abs_bits = max_rel_bits = np.int64(0)
    t = 0
    for r0 in range(0, rows, TILE):
        r1 = min(rows, r0 + TILE)
        for c0 in range(0, cols, TILE):
            c1 = min(cols, c0 + TILE)
            tile_bits = np.int64(0)
            for i in range(r0, r1):
                for j in range(c0, c1):
                    x = np.float64(a[i, j])
                    y = np.float64(b[i, j])
                    d = abs(x - y)
                    m = max(abs(x), abs(y))
                    sq_a += x * x
                    sq_b += y * y
                    sq_d += d * d
                    diffs[j - c0] = d
                    rels[j - c0] = d / (m if m > 0.0 else 1.0)
                    n_bad += d > atol + rtol * m
                for k in range(c1 - c0):
                    tile_bits = max(tile_bits, diff_bits[k])
                    max_rel_bits = max(max_rel_bits, rel_bits[k])
            as_bits[0] = tile_bits
            tile_max[t] = bits[0]
            max_abs_bits = max(max_abs_bits, tile_bits)
            t += 1
    as_bits[0] = max_abs_bits
    max_abs = bits[0]
    as_bits[0] = max_rel_bits
    max_rel = bits[0]
    return max_abs, max_rel, n_bad, sq_a, sq_b, sq_d


@numba.njit(cache=True, nogil=True)
def _fast_scan(a: Any, b: Any, rtol: float, atol: float, row: Any) -> bool:  # pragma: no cover
    """The row of a finite pair with nothing out of tolerance; False (row untouched) for any other pair."""
    rows, cols = a.shape
    if not _finite(a, b):
        return False
    tiles_across = (cols + TILE - 1) // TILE
    tile_max = np.empty(((rows + TILE - 1) // TILE) * tiles_across)
    max_abs, max_rel, n_bad, sq_a, sq_b, sq_d = _fast_sums(a, b, rtol, atol, tile_max)
    if n_bad > 0:
        return False
    at = 0
    if max_abs > 0.0:  # the first element in C order at the greatest difference, from the tiles that hold it
        at = rows * cols
        for t in range(tile_max.size):
            if tile_max[t] == max_abs:
                r0 = (t // tiles_across) * TILE
                c0 = (t % tiles_across) * TILE
                for i in range(r0, min(rows, r0 + TILE)):
                    for j in range(c0, min(cols, c0 + TILE)):
                        if abs(np.float64(a[i, j]) - np.float64(b[i, j])) == max_abs:
                            at = min(at, i * cols + j)
                            break
    row[0] = max_abs
    row[1] = max_rel
    row[2] = 0
    row[3] = at
    row[4] = sq_a
    row[5] = sq_b
    row[6] = sq_d
    row[7:12] = 0
    row[12] = at
    return True


@numba.njit(cache=True, nogil=True)
def _exact_scan(a: Any, b: Any, rtol: float, atol: float, exact_int: bool, row: Any) -> None:  # pragma: no cover
    """Every field with NaN, Inf and integers minded, one element at a time."""
    rows, cols = a.shape
    max_abs = max_rel = sq_a = sq_b = sq_d = 0.0
    worst_score = -1.0
    worst_at = -1
    greatest_at = 0
    n_bad = nan_a = nan_b = inf_a = inf_b = mismatch = 0
    for r0 in range(0, rows, TILE):
        r1 = min(rows, r0 + TILE)
        for c0 in range(0, cols, TILE):
            c1 = min(cols, c0 + TILE)
            for i in range(r0, r1):
                for j in range(c0, c1):
                    x = np.float64(a[i, j])
                    y = np.float64(b[i, j])
                    at = i * cols + j
                    if exact_int:  # integers compare exactly: through float64, 2**53 + 1 == 2**53
                        d = np.float64(abs(np.int64(a[i, j]) - np.int64(b[i, j])))
                    elif x == y:
                        d = 0.0
                    else:
                        d = abs(x - y)
                        if d != d:  # NaN against NaN matches; NaN against anything else is infinitely far
                            d = 0.0 if (x != x and y != y) else math.inf
                    finite_x = math.isfinite(x)
                    finite_y = math.isfinite(y)
                    if not finite_x:
                        if x != x:
                            nan_a += 1
                        else:
                            inf_a += 1
                    if not finite_y:
                        if y != y:
                            nan_b += 1
                        else:
                            inf_b += 1
                    if finite_x != finite_y:
                        mismatch = 1
                    sq_a += x * x
                    sq_b += y * y
                    sq_d += d * d
                    if d > max_abs or (d == max_abs and d > 0.0 and at < greatest_at):
                        max_abs = d
                        greatest_at = at
                    if d > 0.0:
                        m = max(abs(x), abs(y))
                        rel = d / m if m > 0.0 else math.inf
                        if rel != rel:
                            rel = math.inf
                        if rel > max_rel:
                            max_rel = rel
                        allowed = atol + rtol * (m if math.isfinite(m) else 0.0)
                        if d > allowed:
                            n_bad += 1
                            score = d / allowed if allowed > 0.0 else math.inf
                            if score > worst_score or (score == worst_score and at < worst_at):
                                worst_score = score
                                worst_at = at
    row[0] = max_abs
    row[1] = max_rel
    row[2] = n_bad
    row[3] = worst_at if worst_at >= 0 else greatest_at
    row[4] = sq_a
    row[5] = sq_b
    row[6] = sq_d
    row[7] = nan_a
    row[8] = nan_b
    row[9] = inf_a
    row[10] = inf_b
    row[11] = mismatch
    row[12] = greatest_at
