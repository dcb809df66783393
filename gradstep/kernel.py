"""The comparison kernel: one pass over a pair's elements gives its whole summary row.

Every comparison gradstep makes — the engine's per-step summary, a tensor
compared in full for a report or the first divergence, the app's facts about
a pair — is this pass, compiled by numba, over the two arrays as they are (any
strides, any float or integer dtype, no float64 copy of either). It reads each
pair of elements once, in tiles so that a side in another layout (a weight
stored transposed) is read from cache rather than a cache miss an element, and
keeps in registers everything the row needs:

- the greatest absolute and relative difference (NaN against NaN and equal
  values, infinities too, are no difference; NaN against a number is an
  infinite one);
- how many elements are out of the elementwise tolerance
  ``|a - b| > atol + rtol * max(|a|, |b|)`` and the worst of them (furthest
  beyond it; the greatest difference when none is), first in C order on ties,
  as ``np.argmax`` would have it;
- the sums of squares of each side and of the difference, for the normwise
  error;
- NaN and Inf counts per side, and whether any element is finite on one side
  only.

Most pairs are finite (float32 noise, equal, or a real divergence): for those
a branch-free, vectorised pass (no NaN or Inf to mind, checked first) gives the
row, and the indices of the greatest difference and of the worst element are
found again in the tiles that hold them; a pair with a NaN or an Inf, and
integers, take the exact pass, one element at a time. Both give the same row to
the bit: the sums of squares are added in the same order (64 lanes, one a column
of a tile, then the lanes in order), whatever the layout or the machine.

Compiling takes a few seconds the first time a dtype pair is met; numba caches
the machine code beside this file (or in its user cache), so later runs load it
in milliseconds. :func:`warm_up` does that early, on a thread of its own.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

# Positions in a summary row (:func:`gradstep._scan.scan` writes them).
MAX_ABS, MAX_REL, N_BAD, WORST, SQ_A, SQ_B, SQ_DIFF, NAN_A, NAN_B, INF_A, INF_B, MISMATCH, GREATEST = range(13)
ROW = 13

_compiled: Any = None
_lock = threading.Lock()


def _kernel() -> Any:
    """The compiled scan (:mod:`gradstep._scan`), imported on first use: numba loads in about a second."""
    global _compiled
    if _compiled is None:
        with _lock:
            if _compiled is None:
                from gradstep._scan import scan

                _compiled = scan
    return _compiled


def as_matrix(array: np.ndarray) -> np.ndarray:
    """The array as 2-D without a copy where its strides allow (rows of its first axis, the rest flattened)."""
    if array.ndim == 2:
        return array
    if array.ndim < 2:
        return array.reshape(1, -1)
    return array.reshape(array.shape[0], -1)


# For a row where no tolerance applies (the greatest difference and where it is, the sums): the largest
# finite atol keeps every finite pair on the kernel's branch-free path.
NO_TOLERANCE = float(np.finfo(np.float64).max)


def scan_pair(a: np.ndarray, b: np.ndarray, rtol: float, atol: float, row: np.ndarray | None = None,
              expect_bad: bool = False) -> np.ndarray:
    """The summary row of ``a`` against ``b`` (same number of elements; ``b`` is read in ``a``'s shape).

    ``row``: where to write it (a row of a preallocated table), else a new one. ``expect_bad``: the pair
    had elements out of tolerance the last time it was compared (the row is the same either way; a pair that
    goes on diverging is read once rather than twice).
    Indices in the row are flat, in C order of ``a``'s shape.
    """
    row = np.empty(ROW) if row is None else row
    a = np.asarray(a)
    b = np.asarray(b)
    if b.shape != a.shape:
        b = b.reshape(a.shape)
    if a.size == 0:
        row[:] = 0.0
        return row
    exact_int = a.dtype.kind in "iub" and b.dtype.kind in "iub"
    left, right = as_matrix(_numeric(a)), as_matrix(_numeric(b))
    _kernel()(left, right, float(rtol), float(atol), exact_int, row, expect_bad)
    return row


def _numeric(array: np.ndarray) -> np.ndarray:
    """Bools as uint8 (the same bytes, no copy): numba reads numbers."""
    return array.view(np.uint8) if array.dtype == np.bool_ else array


def warm_up() -> threading.Thread:
    """Load (or compile) the kernel on a thread of its own, for the dtype pairs a run meets first."""

    def load() -> None:
        row = np.empty(ROW)
        for dtype in (np.float32, np.float64):
            one = np.zeros((1, 1), dtype=dtype)
            scan_pair(one, one, 0.0, 0.0, row)

    thread = threading.Thread(target=load, name="gradstep-kernel-warm-up", daemon=True)
    thread.start()
    return thread
