"""Small numerical tests the rules share: a constant ratio, a fitted coefficient, noise levels."""

from __future__ import annotations

import numpy as np


def is_float(a: np.ndarray) -> bool:
    return np.asarray(a).dtype.kind == "f"


def lower_eps(*arrays: np.ndarray) -> float:
    """Machine epsilon of the least precise float dtype among ``arrays`` (float64 if none is float)."""
    floats = [np.asarray(a).dtype for a in arrays if is_float(a)]
    if not floats:
        return float(np.finfo(np.float64).eps)
    return max(float(np.finfo(d).eps) for d in floats)


def agreement_tolerance(*arrays: np.ndarray) -> float:
    """Relative to a tensor's scale, how far two computations of the same math may differ.

    Generous (different summation orders, a few thousand terms): 1e-4 when a
    float32 is involved, about 1e-10 for float64 alone.
    """
    return min(1e-4, max(1e-10, 1e3 * lower_eps(*arrays)))


def finite(*arrays: np.ndarray) -> bool:
    return all(bool(np.isfinite(np.asarray(a, dtype=np.float64)).all()) for a in arrays)


def constant_ratio(a: np.ndarray, b: np.ndarray, rel_tol: float) -> float | None:
    """``r`` with ``a ≈ r * b`` element for element (relative to the tensors' scale), or None."""
    a64 = np.asarray(a, dtype=np.float64).reshape(-1)
    b64 = np.asarray(b, dtype=np.float64).reshape(-1)
    if a64.size == 0 or a64.size != b64.size or not finite(a64, b64):
        return None
    bb = float(b64 @ b64)
    if bb == 0.0 or not np.any(a64):
        return None
    r = float(a64 @ b64) / bb
    residual = float(np.max(np.abs(a64 - r * b64)))
    if residual > rel_tol * float(np.max(np.abs(a64))):
        return None
    return r


def fit_coefficient(difference: np.ndarray, basis: np.ndarray, noise: np.ndarray, rel_tol: float,
                    support: int = 1) -> float | None:
    """``k`` with ``difference ≈ k * basis`` within ``noise`` per element, standing clear of the noise on at least
    ``support`` elements."""
    d = np.asarray(difference, dtype=np.float64).reshape(-1)
    w = np.asarray(basis, dtype=np.float64).reshape(-1)
    if not finite(d, w):
        return None
    n = np.asarray(noise, dtype=np.float64).reshape(-1)
    # Weighted least squares: elements with little rounding noise decide k.
    weight = 1.0 / (n + rel_tol * float(np.max(np.abs(d), initial=0.0)) + 1e-300) ** 2
    ww = float(np.sum(weight * w * w))
    if ww == 0.0:
        return None
    k = float(np.sum(weight * d * w)) / ww
    fitted = k * w
    signal = float(np.max(np.abs(fitted)))
    if k == 0.0 or int(np.count_nonzero(np.abs(fitted) > 4 * n)) < support:
        return None
    ok = np.abs(d - fitted) <= n + rel_tol * signal
    return k if bool(ok.all()) else None


def close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def arrays_close(a: np.ndarray, b: np.ndarray, rel_tol: float) -> bool:
    """Same shape and equal to ``rel_tol`` of the larger tensor's scale."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape or not finite(a64, b64):
        return False
    scale = max(float(np.max(np.abs(a64), initial=0.0)), float(np.max(np.abs(b64), initial=0.0)))
    return bool(np.max(np.abs(a64 - b64), initial=0.0) <= rel_tol * scale)
