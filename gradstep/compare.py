"""Comparing a NumPy-side tensor with its torch-side counterpart.

Two criteria, both needed for "within tolerance":

- **Elementwise**, as ``torch.testing.assert_close``: ``|a - b| <= atol + rtol * m``
  with per-dtype default tolerances, except that ``m`` is ``max(|a|, |b|)`` so
  that neither side is privileged as "expected". Values that are equal as
  floats (``0.0`` and ``-0.0``, ``inf`` and ``inf``) or NaN on both sides at the
  same place count as matching; NaN/Inf are also counted per side.
- **Normwise**, on the pair's own scale: ``||a - b|| / max(||a||, ||b||) <= norm``
  (2-norms). ``atol`` swamps a tensor whose values are all far below it (an
  update of 1e-7 against float32's ``atol`` 1e-5); the normwise error does not.
  An update ``after - before`` is stored rounded to the weights' precision, so
  its normwise tolerance adds that rounding, ``4 eps ||after|| / ||update||``.

The relative difference is ``|a - b| / max(|a|, |b|)`` (0 when both are 0), so
it never divides by zero. ULP distances are measured in the lower-precision
dtype of the two, as the number of representable values between them.

Every comparison of a whole pair — the engine's per-step summary
(:class:`PairSummarizer`), a pair in full (:func:`compare_tensor`, which the
report, the first divergence and the app use) — is one pass of the compiled
kernel in :mod:`gradstep.kernel`. :func:`element_diffs` is the same rule element
by element, for the few elements a screen shows.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from gradstep.kernel import (
    INF_A,
    INF_B,
    MAX_ABS,
    MAX_REL,
    MISMATCH,
    N_BAD,
    NAN_A,
    NAN_B,
    ROW,
    SQ_A,
    SQ_B,
    SQ_DIFF,
    WORST,
    scan_pair,
)


class Status(enum.IntEnum):
    """What a tensor pair is at a step, from best to worst; the UI shows a mark for each."""

    OK = 0  # within tolerance
    DRIFT = 1  # out of tolerance free-running, within tolerance locally
    ROUNDING = 2  # out of tolerance locally, but the same math: the precision referee agrees
    ONE_SIDE = 3  # exists on one side only
    SHAPE = 4  # shapes cannot be compared element for element
    NONFINITE = 5  # NaN or Inf on one side where the other has a finite value
    DIVERGED = 6  # out of tolerance even when both sides start the step from the same weights


# Saved sessions of format 1 numbered the statuses without ROUNDING.
STATUS_FROM_FORMAT_1 = {0: Status.OK, 1: Status.DRIFT, 2: Status.ONE_SIDE, 3: Status.SHAPE, 4: Status.NONFINITE,
                        5: Status.DIVERGED}


@dataclass(frozen=True)
class Tolerance:
    """Elementwise ``rtol``/``atol`` and the normwise relative tolerance ``norm``."""

    rtol: float
    atol: float
    norm: float = -1.0  # left out: the same as rtol

    def __post_init__(self) -> None:
        if self.norm < 0:
            object.__setattr__(self, "norm", float(self.rtol))


# torch.testing.assert_close's defaults, elementwise. Normwise: float32's is a few hundred units
# of rounding, above what the same math reaches with long float32 reductions (measured: <= 5e-6
# on tutorial MLPs) and far below any bug worth the name; the others are their rtol.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float16": Tolerance(1e-3, 1e-5, 1e-3),
    "bfloat16": Tolerance(1.6e-2, 1e-5, 1.6e-2),
    "float32": Tolerance(1.3e-6, 1e-5, 3e-5),
    "float64": Tolerance(1e-7, 1e-7, 1e-7),
}
EXACT = Tolerance(0.0, 0.0, 0.0)
UPDATE_ROUNDING_ULPS = 4.0  # an update's normwise floor: this many eps of the weight it changed


def lower_precision(a: np.dtype, b: np.dtype) -> np.dtype:
    """The float dtype of the two with fewer mantissa bits (integers count as float64)."""
    floats = [np.dtype(d) for d in (a, b) if np.dtype(d).kind == "f"]
    if not floats:
        return np.dtype(np.float64)
    return min(floats, key=lambda d: np.finfo(d).nmant)


def tolerance_for(a: np.dtype, b: np.dtype, rtol: float | None = None, atol: float | None = None) -> Tolerance:
    """The tolerance for comparing dtypes ``a`` and ``b``: the user's, or the looser default.

    The user's ``rtol``/``atol`` are elementwise; the normwise tolerance stays the
    dtype's default unless ``rtol`` is looser.
    """
    if (rtol is None) != (atol is None):
        raise ValueError("rtol and atol must be given together")
    if np.dtype(a).kind != "f" and np.dtype(b).kind != "f":
        default = EXACT
    else:
        default = DEFAULT_TOLERANCES.get(lower_precision(a, b).name, DEFAULT_TOLERANCES["float64"])
    if rtol is not None and atol is not None:
        check_tolerances(rtol, atol)
        return Tolerance(float(rtol), float(atol), max(float(rtol), default.norm))
    return default


def check_tolerances(rtol: float, atol: float) -> None:
    """Refuse tolerances that would make every comparison pass or none: NaN, infinite, negative."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, not {value!r}") from None
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")


def normwise_tolerance(tol: Tolerance, dtype: np.dtype, update_of_norm: float | None = None,
                       update_norm: float = 0.0) -> float:
    """The normwise tolerance of a pair; for an update, plus the rounding of the weight it changed."""
    if update_of_norm is None or update_norm <= 0 or np.dtype(dtype).kind != "f":
        return tol.norm
    return tol.norm + UPDATE_ROUNDING_ULPS * float(np.finfo(dtype).eps) * update_of_norm / update_norm


def normwise_error(sq_diff: float, sq_a: float, sq_b: float) -> float:
    """``||a - b|| / max(||a||, ||b||)`` from sums of squares; 0 when both sides are 0."""
    scale = max(sq_a, sq_b)
    if sq_diff == 0:
        return 0.0
    return math.sqrt(sq_diff / scale) if scale > 0 else math.inf


@dataclass(frozen=True)
class ElementDiffs:
    """Per-element differences of two same-shaped arrays."""

    abs: np.ndarray
    rel: np.ndarray
    ulp: np.ndarray
    bad: np.ndarray  # out of tolerance (including a NaN/Inf against a finite value)
    score: np.ndarray  # how far out of tolerance: abs / allowed; inf for a non-finite mismatch


def element_diffs(a: np.ndarray, b: np.ndarray, tol: Tolerance) -> ElementDiffs:
    """Differences of ``a`` and ``b`` (same shape), element for element."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(a64 - b64))
        if np.asarray(a).dtype.kind in "iub" and np.asarray(b).dtype.kind in "iub":
            # Integers compare exactly: in float64, 2**53 + 1 and 2**53 are the same number.
            diff = np.abs(np.asarray(a, dtype=np.int64) - np.asarray(b, dtype=np.int64)).astype(np.float64)
        diff = np.where(np.isnan(diff), np.inf, diff)
        magnitude = np.maximum(np.abs(a64), np.abs(b64))
        rel = np.where(diff == 0, 0.0, diff / np.where(magnitude == 0, 1.0, magnitude))
        rel = np.where(np.isnan(rel), np.inf, rel)
        allowed = tol.atol + tol.rtol * np.where(np.isfinite(magnitude), magnitude, 0.0)
        score = np.where(diff == 0, 0.0, diff / np.where(allowed == 0, 1e-300, allowed))
    bad = diff > allowed
    ulp = ulp_distance(a, b, lower_precision(np.asarray(a).dtype, np.asarray(b).dtype))
    return ElementDiffs(abs=diff, rel=rel, ulp=ulp, bad=bad, score=score)


def ulp_distance(a: np.ndarray, b: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Representable values of ``dtype`` between ``a`` and ``b`` (after rounding both to it).

    Returned as float64 (exact below 2**53 ULPs): NaN against anything but NaN is ``inf``.
    """
    dt = np.dtype(dtype)
    ia = _ordered_int(np.asarray(a, dtype=dt))
    ib = _ordered_int(np.asarray(b, dtype=dt))
    # Subtract as integers: through float64, neighbouring float64 values would be 0 ULP apart.
    # Opposite signs can overflow int64, so add the magnitudes as uint64 there.
    same_sign = (ia >= 0) == (ib >= 0)
    with np.errstate(over="ignore"):
        near = np.abs(np.where(same_sign, ia - ib, 0)).astype(np.float64)
        far = (np.abs(ia).astype(np.uint64) + np.abs(ib).astype(np.uint64)).astype(np.float64)
    dist = np.where(same_sign, near, far)
    nan_a = np.isnan(np.asarray(a, dtype=np.float64))
    nan_b = np.isnan(np.asarray(b, dtype=np.float64))
    return np.where(nan_a & nan_b, 0.0, np.where(nan_a | nan_b, np.inf, dist))


def _ordered_int(x: np.ndarray) -> np.ndarray:
    """Map floats to integers whose order is the floats' order (+0 and -0 both to 0)."""
    signed = {2: np.int16, 4: np.int32, 8: np.int64}[x.dtype.itemsize]
    bits = x.view(signed).astype(np.int64)
    magnitude_mask = np.int64((1 << (x.dtype.itemsize * 8 - 1)) - 1)
    magnitude = bits & magnitude_mask
    return np.where(bits < 0, -magnitude, magnitude)


@dataclass(frozen=True)
class TensorComparison:
    """How one named tensor compares between the sides at one step.

    ``worst_index`` is the element furthest out of tolerance (or with the
    greatest absolute difference when all are within), with both values in
    their own dtypes. ``only_on`` names the side that has the tensor when the
    other does not.
    """

    key: str
    status: Status
    tolerance: Tolerance
    numpy_shape: tuple[int, ...] | None
    torch_shape: tuple[int, ...] | None
    numpy_dtype: str | None
    torch_dtype: str | None
    size: int = 0
    n_bad: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_ulp: float = 0.0
    worst_index: tuple[int, ...] | None = None
    worst_numpy: np.generic | None = None
    worst_torch: np.generic | None = None
    nan_numpy: int = 0
    nan_torch: int = 0
    inf_numpy: int = 0
    inf_torch: int = 0
    only_on: str | None = None
    note: str = ""
    norm_error: float = 0.0  # ||a - b|| / max(||a||, ||b||)
    norm_tolerance: float = 0.0

    @property
    def norm_bad(self) -> bool:
        """Out of the normwise tolerance (NaN counts as out)."""
        return not self.norm_error <= self.norm_tolerance

    @property
    def within(self) -> bool:
        return self.n_bad == 0 and not self.norm_bad and self.status in (Status.OK, Status.DRIFT, Status.ROUNDING)

    @property
    def nonfinite(self) -> bool:
        return bool(self.nan_numpy or self.nan_torch or self.inf_numpy or self.inf_torch)


def compare_tensor(
    key: str,
    numpy_value: np.ndarray | None,
    torch_value: np.ndarray | None,
    rtol: float | None = None,
    atol: float | None = None,
    update_of_norm: float | None = None,
    tolerance: Tolerance | None = None,
    ulp: bool = True,
) -> TensorComparison:
    """Compare one pair in full: counts, worst element, NaN/Inf, normwise error, shape and one-sided cases.

    One pass of the comparison kernel (:mod:`gradstep.kernel`), however big the pair.
    ``update_of_norm``: for an update pair, the norm of the weight it changed (its rounding floor);
    ``tolerance``: the pair's own (a scenario's per-tensor tolerance), instead of ``rtol``/``atol``;
    ``ulp``: also the greatest distance in ULPs (a second pass; the app's list does without).
    """
    if numpy_value is None or torch_value is None:
        return _one_sided(key, numpy_value, torch_value)
    a = np.asarray(numpy_value)
    b = np.asarray(torch_value)
    tol = tolerance if tolerance is not None else tolerance_for(a.dtype, b.dtype, rtol, atol)
    common = dict(key=key, tolerance=tol, numpy_shape=a.shape, torch_shape=b.shape, numpy_dtype=a.dtype.name,
                  torch_dtype=b.dtype.name)
    if a.size != b.size:
        return TensorComparison(status=Status.SHAPE, note=_shape_note(a, b), **common, **_nonfinite_counts(a, b))
    if a.size == 0:
        return TensorComparison(status=Status.OK, **common)
    row = scan_pair(a, b, tol.rtol, tol.atol)
    b = b.reshape(a.shape)  # same elements in another shape, e.g. (N,) against (N, 1): compared, and said so
    index = tuple(int(i) for i in np.unravel_index(int(row[WORST]), a.shape))
    n_bad = int(row[N_BAD])
    norm_error, norm_tol = _normwise(row, a.dtype, b.dtype, a.size, tol, update_of_norm)
    status = Status.OK
    if n_bad:
        status = Status.NONFINITE if row[MISMATCH] else Status.DIVERGED
    elif not norm_error <= norm_tol:
        status = Status.DIVERGED
    return TensorComparison(
        status=status,
        size=int(a.size),
        n_bad=n_bad,
        max_abs=float(row[MAX_ABS]),
        max_rel=float(row[MAX_REL]),
        max_ulp=max_ulp(a, b) if ulp else 0.0,
        worst_index=index,
        worst_numpy=a[index] if a.ndim else a[()],
        worst_torch=b[index] if b.ndim else b[()],
        nan_numpy=int(row[NAN_A]), nan_torch=int(row[NAN_B]), inf_numpy=int(row[INF_A]), inf_torch=int(row[INF_B]),
        note="" if a.shape == np.asarray(torch_value).shape else _shape_note(a, np.asarray(torch_value)),
        norm_error=norm_error,
        norm_tolerance=norm_tol,
        **common,
    )


def _normwise(row: np.ndarray, dtype_a: np.dtype, dtype_b: np.dtype, size: int, tol: Tolerance,
              update_of_norm: float | None) -> tuple[float, float]:
    """The pair's normwise error and tolerance, from its summary row's sums of squares.

    NaN/Inf anywhere: not judged normwise (0 against its tolerance); the elementwise pass and the NaN/Inf
    counts say what is wrong. Subnormal throughout: no relative precision to judge, likewise.
    """
    sq_a, sq_b, sq_diff = float(row[SQ_A]), float(row[SQ_B]), float(row[SQ_DIFF])
    if not (math.isfinite(sq_a) and math.isfinite(sq_b) and math.isfinite(sq_diff)):
        return 0.0, tol.norm
    dtype = lower_precision(dtype_a, dtype_b)
    scale = math.sqrt(max(sq_a, sq_b))
    if scale <= smallest_norm(dtype, size):
        return 0.0, tol.norm
    norm_tol = normwise_tolerance(tol, dtype, update_of_norm, scale)
    return normwise_error(sq_diff, sq_a, sq_b), norm_tol


def max_ulp(a: np.ndarray, b: np.ndarray) -> float:
    """The greatest ULP distance of the pair (same shape), a bounded chunk at a time."""
    dtype = lower_precision(a.dtype, b.dtype)
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)  # a view where it can be; else one copy of that side
    worst = 0.0
    for start in range(0, flat_a.size, _ULP_CHUNK):
        part = slice(start, start + _ULP_CHUNK)
        worst = max(worst, float(ulp_distance(flat_a[part], flat_b[part], dtype).max()))
    return worst


_ULP_CHUNK = 1 << 16


def smallest_norm(dtype: np.dtype, size: int) -> float:
    """The norm of ``size`` elements at the dtype's smallest normal number: below it, values are subnormal
    and carry no relative precision, so no normwise verdict."""
    if np.dtype(dtype).kind != "f":
        return 0.0
    return float(np.finfo(dtype).tiny) * math.sqrt(size)


def _one_sided(key: str, numpy_value: np.ndarray | None, torch_value: np.ndarray | None) -> TensorComparison:
    present = numpy_value if numpy_value is not None else torch_value
    side = "numpy" if numpy_value is not None else "torch"
    arr = np.asarray(present)
    return TensorComparison(
        key=key,
        status=Status.ONE_SIDE,
        tolerance=EXACT,
        numpy_shape=arr.shape if side == "numpy" else None,
        torch_shape=arr.shape if side == "torch" else None,
        numpy_dtype=arr.dtype.name if side == "numpy" else None,
        torch_dtype=arr.dtype.name if side == "torch" else None,
        size=int(arr.size),
        only_on=side,
        note=f"only the {side} side has {key}",
    )


def _nonfinite_counts(a: np.ndarray, b: np.ndarray) -> dict[str, int]:
    def counts(x: np.ndarray) -> tuple[int, int]:
        if x.dtype.kind != "f":
            return 0, 0
        return int(np.isnan(x).sum()), int(np.isinf(x).sum())

    nan_a, inf_a = counts(a)
    nan_b, inf_b = counts(b)
    return dict(nan_numpy=nan_a, nan_torch=nan_b, inf_numpy=inf_a, inf_torch=inf_b)


def _shape_note(a: np.ndarray, b: np.ndarray) -> str:
    return f"shapes differ: numpy {a.shape}, torch {b.shape}"


@dataclass(frozen=True)
class StepSummary:
    """Per-pair worst differences of one step, from the comparison kernel's rows."""

    max_abs: np.ndarray  # float64, one per key
    max_rel: np.ndarray
    n_bad: np.ndarray  # int64, elements out of tolerance
    finite: bool = True  # no NaN or Inf on either side
    sq_a: np.ndarray | None = None  # sums of squares, for the normwise error
    sq_b: np.ndarray | None = None
    sq_diff: np.ndarray | None = None

    rows: np.ndarray | None = None  # the kernel's summary rows the figures came from

    @classmethod
    def of(cls, rows: np.ndarray) -> StepSummary:
        """The figures of the kernel's summary rows (max_rel's 0/0 of all-zero pairs is 0 there already)."""
        nonfinite = rows[:, NAN_A:INF_B + 1].sum() if len(rows) else 0
        return cls(rows[:, MAX_ABS].copy(), rows[:, MAX_REL].copy(), rows[:, N_BAD].astype(np.int64),
                   bool(nonfinite == 0), rows[:, SQ_A].copy(), rows[:, SQ_B].copy(), rows[:, SQ_DIFF].copy(), rows)

    def norm_errors(self) -> np.ndarray:
        """``||a - b|| / max(||a||, ||b||)`` per pair (0 where both are 0; NaN where not finite)."""
        scale = np.maximum(self.sq_a, self.sq_b)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.sqrt(self.sq_diff / scale)
        ratio[self.sq_diff == 0] = 0.0
        return ratio

    def norm_out(self, norm_tols: np.ndarray, update_of: np.ndarray, eps: np.ndarray,
                 weight_norms: np.ndarray, smallest_norms: np.ndarray) -> np.ndarray:
        """Pairs out of their normwise tolerance. ``update_of``: True for update pairs, whose tolerance
        adds the rounding of the weight they changed (``weight_norms``, ``eps``: its precision).
        ``smallest_norms``: pairs whose norm is below this (all subnormal) are not judged normwise."""
        errors = self.norm_errors()
        scale = np.maximum(self.sq_a, self.sq_b)
        update_norm = np.sqrt(scale)
        with np.errstate(invalid="ignore", divide="ignore"):
            floor = np.where(update_of & (update_norm > 0),
                             UPDATE_ROUNDING_ULPS * eps * weight_norms / update_norm, 0.0)
        out = (errors > norm_tols + floor) & (update_norm > smallest_norms)
        # NaN/Inf anywhere is the elementwise pass's to judge (and the NaN/Inf counts').
        out[~np.isfinite(self.sq_a) | ~np.isfinite(self.sq_b) | ~np.isfinite(self.sq_diff)] = False
        return out


class PairSummarizer:
    """The summary rows of a step's pairs: one kernel pass each, written into a table made once.

    Each pair is read where it lies (no concatenation, no float64 copy); a step
    costs one call per pair. ``summarize`` can take a subset of the pairs (a
    local re-run judges only those out of tolerance free-running).
    """

    def __init__(self, sizes: list[int], tolerances: list[Tolerance]):
        """``sizes``: the pairs' element counts; ``tolerances``: each pair's."""
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.tolerances = list(tolerances)
        self._rtol = [float(t.rtol) for t in tolerances]
        self._atol = [float(t.atol) for t in tolerances]
        self._bad_last = [False] * len(tolerances)  # per pair: out of tolerance when last compared

    def matches(self, sizes: list[int]) -> bool:
        return len(sizes) == len(self.sizes) and bool(np.all(self.sizes == sizes))

    def summarize(self, numpy_values: list[np.ndarray], torch_values: list[np.ndarray],
                  pairs: list[int] | None = None, carried: dict[int, np.ndarray] | None = None) -> StepSummary:
        """Rows of the pairs (``pairs``: which of this summarizer's, in the order of the values given).

        ``carried``: rows already known (a pair equal to one summarized before), by position in ``pairs``.
        """
        chosen = range(len(numpy_values)) if pairs is None else pairs
        rows = np.empty((len(numpy_values), ROW))
        for position, (i, a, b) in enumerate(zip(chosen, numpy_values, torch_values, strict=True)):
            if carried is not None and position in carried:
                rows[position] = carried[position]
            else:
                scan_pair(a, b, self._rtol[i], self._atol[i], rows[position], self._bad_last[i])
                self._bad_last[i] = bool(rows[position, N_BAD] > 0)
        return StepSummary.of(rows)


def summarize_pairs(
    numpy_values: list[np.ndarray], torch_values: list[np.ndarray], tolerances: list[Tolerance]
) -> StepSummary:
    """One-off :class:`PairSummarizer` run, for callers that do not step."""
    sizes = [int(np.size(v)) for v in numpy_values]
    return PairSummarizer(sizes, tolerances).summarize(numpy_values, torch_values)
