"""The compiled loop of :mod:`gradstep.kernel` (numba): imported only when a comparison first runs."""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

TILE = 64  # 64 x 64 elements of each side: a tile of both fits in L1, whichever layout each side has


@numba.njit(cache=True, nogil=True)
def scan(a: Any, b: Any, rtol: float, atol: float, exact_int: bool, row: Any,
         expect_bad: bool = False) -> None:  # pragma: no cover
    """Write the summary row of 2-D ``a`` against ``b`` into ``row`` (see gradstep.kernel for its fields).

    Most pairs are finite: for them a branch-free pass gives the row at a third of the cost or less, out of
    tolerance or not; a pair with a NaN or an Inf, and integers, take the exact pass. ``expect_bad``: the
    pair had elements out of tolerance last time (see ``_fast_scan``).
    """
    if exact_int or not _fast_scan(a, b, rtol, atol, row, expect_bad):
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


# A sum of squares is added in lanes, one a column of a tile (lane k holds columns k, k + 64, ... in tile
# order, each row after the one above it), then the lanes in order: the same order whatever the layout or the
# machine's vector width, so a pair's normwise error depends on neither, and both passes add alike. Lanes are
# independent, so the compiler can vectorise them without reassociating anything (a single running sum cannot
# be, and reassociated ones round by the vector width).
@numba.njit(cache=True, nogil=True)
def _lanes_total(lanes: Any) -> float:  # pragma: no cover
    total = 0.0
    for k in range(lanes.size):
        total += lanes[k]
    return total


# Only on finite elements (checked first): no NaN to keep track of, no branch an element ("ninf" is not
# claimed: a score is infinite where the tolerance is 0). No "reassoc" or "contract": every sum, product and
# quotient rounds as in the exact pass. Per tile and lane, the greatest difference and the greatest score (how
# far out of tolerance: 0 within it), found again afterwards in the tiles that hold them; per lane, the
# greatest relative difference and the sums of squares.
@numba.njit(cache=True, nogil=True, fastmath={"nnan", "nsz"})
def _finite_sums(a: Any, b: Any, rtol: float, atol: float, scored: bool, tile_abs: Any,
                 tile_score: Any) -> Any:  # pragma: no cover
    rows, cols = a.shape
    sq_a, sq_b, sq_d = np.zeros(TILE), np.zeros(TILE), np.zeros(TILE)
    top, top_score, top_rel = np.empty(TILE), np.empty(TILE), np.zeros(TILE)
    n_bad = 0
    t = 0
    for r0 in range(0, rows, TILE):
        r1 = min(rows, r0 + TILE)
        for c0 in range(0, cols, TILE):
            c1 = min(cols, c0 + TILE)
            width = c1 - c0
            top[:width] = 0.0
            top_score[:width] = 0.0
            for i in range(r0, r1):
                row_a, row_b = a[i, c0:c1], b[i, c0:c1]
                for k in range(width):
                    x = np.float64(row_a[k])
                    y = np.float64(row_b[k])
                    d = abs(x - y)
                    m = max(abs(x), abs(y))
                    sq_a[k] += x * x
                    sq_b[k] += y * y
                    sq_d[k] += d * d
                    top_rel[k] = max(top_rel[k], d / (m if m > 0.0 else 1.0))
                    top[k] = max(top[k], d)
                    allowed = atol + rtol * m
                    bad = d > allowed
                    n_bad += bad
                    if scored:  # the same for every element: compiled as two loops, one without the division
                        score = d / (allowed if allowed > 0.0 else 1.0) if allowed > 0.0 else math.inf
                        top_score[k] = max(top_score[k], score if bad else 0.0)
            greatest = worst = 0.0
            for k in range(width):
                greatest = max(greatest, top[k])
                worst = max(worst, top_score[k])
            tile_abs[t] = greatest
            tile_score[t] = worst
            t += 1
    max_rel = 0.0
    for k in range(TILE):
        max_rel = max(max_rel, top_rel[k])
    return max_rel, n_bad, _lanes_total(sq_a), _lanes_total(sq_b), _lanes_total(sq_d)


@numba.njit(cache=True, nogil=True)
def _first_at(a: Any, b: Any, rtol: float, atol: float, tile_max: Any, greatest: float,
              score: bool) -> int:  # pragma: no cover
    """The first element in C order whose difference (``score``: whose score) is ``greatest``, from the tiles
    whose maximum it is."""
    rows, cols = a.shape
    tiles_across = (cols + TILE - 1) // TILE
    at = rows * cols
    for t in range(tile_max.size):
        if tile_max[t] != greatest:
            continue
        r0 = (t // tiles_across) * TILE
        c0 = (t % tiles_across) * TILE
        for i in range(r0, min(rows, r0 + TILE)):
            for j in range(c0, min(cols, c0 + TILE)):
                x = np.float64(a[i, j])
                y = np.float64(b[i, j])
                d = abs(x - y)
                if score:
                    allowed = atol + rtol * max(abs(x), abs(y))
                    value = (d / allowed if allowed > 0.0 else math.inf) if d > allowed else 0.0
                else:
                    value = d
                if value == greatest:
                    at = min(at, i * cols + j)
                    break
    return at


@numba.njit(cache=True, nogil=True)
def _fast_scan(a: Any, b: Any, rtol: float, atol: float, row: Any,
               expect_bad: bool = False) -> bool:  # pragma: no cover
    """The row of a finite pair, out of tolerance or not; False (row untouched) for a pair with NaN or Inf.
    ``expect_bad``: the pair was out of tolerance last time (a divergence persists): scores from the start."""
    rows, cols = a.shape
    if not _finite(a, b):
        return False
    tiles = ((rows + TILE - 1) // TILE) * ((cols + TILE - 1) // TILE)
    tile_abs, tile_score = np.empty(tiles), np.zeros(tiles)
    # Most pairs have nothing out of tolerance: first without the scores, which only an element out of it needs.
    max_rel, n_bad, sq_a, sq_b, sq_d = _finite_sums(a, b, rtol, atol, expect_bad, tile_abs, tile_score)
    if n_bad > 0 and not expect_bad:
        max_rel, n_bad, sq_a, sq_b, sq_d = _finite_sums(a, b, rtol, atol, True, tile_abs, tile_score)
    max_abs = worst = 0.0
    for t in range(tiles):
        max_abs = max(max_abs, tile_abs[t])
        worst = max(worst, tile_score[t])
    greatest_at = _first_at(a, b, rtol, atol, tile_abs, max_abs, False) if max_abs > 0.0 else 0
    row[0] = max_abs
    row[1] = max_rel
    row[2] = n_bad
    row[3] = _first_at(a, b, rtol, atol, tile_score, worst, True) if n_bad > 0 else greatest_at
    row[4] = sq_a
    row[5] = sq_b
    row[6] = sq_d
    row[7:12] = 0
    row[12] = greatest_at
    return True


@numba.njit(cache=True, nogil=True)
def _exact_scan(a: Any, b: Any, rtol: float, atol: float, exact_int: bool, row: Any) -> None:  # pragma: no cover
    """Every field with NaN, Inf and integers minded, one element at a time."""
    rows, cols = a.shape
    max_abs = max_rel = 0.0
    sq_a, sq_b, sq_d = np.zeros(TILE), np.zeros(TILE), np.zeros(TILE)  # in lanes, as the fast pass adds them
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
                    sq_a[j - c0] += x * x
                    sq_b[j - c0] += y * y
                    sq_d[j - c0] += d * d
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
    row[4] = _lanes_total(sq_a)
    row[5] = _lanes_total(sq_b)
    row[6] = _lanes_total(sq_d)
    row[7] = nan_a
    row[8] = nan_b
    row[9] = inf_a
    row[10] = inf_b
    row[11] = mismatch
    row[12] = greatest_at
