"""Numbers at full precision: the shortest decimal that round-trips, or the exact bits.

Never NumPy's or torch's print options: those truncate (torch shows 0.6590 for
0.65897509416461408). A float32 0.1 is shown as ``0.1`` because that decimal
reads back as the same float32; a float64 shows every digit it needs.
"""

from __future__ import annotations

import math

import numpy as np

# Outside this range positional notation gets long; switch to scientific.
_POSITIONAL_MIN = 1e-4
_POSITIONAL_MAX = 1e16


def shortest(value: float | np.generic, dtype: np.dtype | str | None = None) -> str:
    """The shortest decimal string that reads back as ``value`` in ``dtype``.

    ``dtype`` defaults to the value's own dtype (float64 for a Python float).
    Integers and booleans print as themselves.
    """
    dt = np.dtype(dtype) if dtype is not None else _dtype_of(value)
    if dt.kind in "iub":
        return str(int(value)) if dt.kind != "b" else str(bool(value))
    x = dt.type(value)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    magnitude = abs(float(x))
    if magnitude == 0.0 or _POSITIONAL_MIN <= magnitude < _POSITIONAL_MAX:
        return np.format_float_positional(x, unique=True, trim="-")
    return np.format_float_scientific(x, unique=True, trim="-", exp_digits=2)


def exact_hex(value: float | np.generic, dtype: np.dtype | str | None = None) -> str:
    """The stored bits as ``0x`` hex of the dtype's width, e.g. ``0x3dcccccd``."""
    dt = np.dtype(dtype) if dtype is not None else _dtype_of(value)
    if dt.kind != "f":
        return hex(int(value))
    bits = np.array(value, dtype=dt).view(_uint_for(dt))
    return f"0x{int(bits):0{dt.itemsize * 2}x}"


def fmt(value: float | np.generic, dtype: np.dtype | str | None = None, *, hex_bits: bool = False) -> str:
    """``shortest`` or, with ``hex_bits``, ``exact_hex``: the one switch the UI offers."""
    return exact_hex(value, dtype) if hex_bits else shortest(value, dtype)


def fmt_array(values: np.ndarray, *, hex_bits: bool = False) -> list[str]:
    """Every element of ``values`` (flattened) at full precision in its own dtype."""
    dt = values.dtype
    return [fmt(v, dt, hex_bits=hex_bits) for v in np.asarray(values).reshape(-1)]


def json_number(value: float | int | np.generic | None) -> float | int | bool | str | None:
    """A JSON-safe number: floats as themselves (json writes repr, which round-trips exactly),
    NaN and Inf as the strings "NaN", "Infinity", "-Infinity" so the output stays strict JSON."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    x = float(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


CUT = "…"


def fit(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters; a number that must be cut says so with ``…``.

    The digits go from the end of the mantissa, the exponent stays
    (``6.6917…e-09``, never ``6.691775529261``, which reads as 6.69). Display
    only: a cut number never round-trips, and its mark says so.
    """
    if len(text) <= width:
        return text
    if width <= 1:
        return CUT[:width]
    mantissa, e, exponent = text.partition("e") if not text.startswith("0x") else (text, "", "")
    tail = e + exponent
    keep = width - len(tail) - len(CUT)
    if keep < 1:  # no room for the exponent and a digit: the start, marked
        return text[:width - len(CUT)] + CUT
    return mantissa[:keep] + CUT + tail


def align_decimal(texts: list[str]) -> list[str]:
    """Pad strings so their decimal points line up when right-aligned in a column."""
    fractions = [_fraction_width(t) for t in texts]
    widest = max(fractions, default=0)
    padded = [t + " " * (widest - f) for t, f in zip(texts, fractions, strict=True)]
    width = max((len(p) for p in padded), default=0)
    return [p.rjust(width) for p in padded]


def _fraction_width(text: str) -> int:
    """Characters after the decimal point (exponent included) or 0."""
    if "." in text:
        return len(text) - text.index(".")
    if "e" in text:
        return len(text) - text.index("e")
    return 0


def _dtype_of(value: float | np.generic) -> np.dtype:
    if isinstance(value, np.generic):
        return value.dtype
    if isinstance(value, bool):
        return np.dtype(bool)
    if isinstance(value, int):
        return np.dtype(np.int64)
    return np.dtype(np.float64)


def _uint_for(dt: np.dtype) -> type[np.unsignedinteger]:
    return {2: np.uint16, 4: np.uint32, 8: np.uint64}[dt.itemsize]
