"""gradstep.numfmt: shortest round-tripping decimals, exact bits, aligned columns."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np
import pytest

from gradstep.numfmt import align_decimal, exact_hex, fmt, fmt_array, shortest

N_RANDOM = 3000


def random_floats(dtype: type[np.floating], n: int = N_RANDOM, seed: int = 1234) -> np.ndarray:
    """Uniformly random bit patterns of ``dtype`` (all exponents, subnormals and infinities), NaN excluded."""
    rng = np.random.RandomState(seed)
    if dtype is np.float32:
        bits = rng.randint(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
        values = bits.view(np.float32)
    else:
        values = rng.randint(0, 2**64, size=n, dtype=np.uint64).view(np.float64)
    return values[~np.isnan(values)]


def significant_digits(text: str) -> int:
    return len(Decimal(text).normalize().as_tuple().digits)


def neighbours_with_fewer_digits(value: np.floating, n_digits: int) -> tuple[Decimal, Decimal]:
    """The closest decimals with ``n_digits`` significant digits below and above the exact value.

    Any other decimal of at most that many digits lies outside the interval between these two,
    and the set of decimals that read back as ``value`` is an interval containing ``value``: so
    if neither of the two reads back, no decimal that short does.
    """
    exact = Decimal(float(value))  # a float32 is exactly representable as a float64
    quantum = Decimal(1).scaleb(exact.adjusted() - n_digits + 1)
    below = (exact / quantum).to_integral_value(ROUND_FLOOR) * quantum
    above = (exact / quantum).to_integral_value(ROUND_CEILING) * quantum
    return below, above


# --- shortest ---------------------------------------------------------------------------


def test_float32_point_one_is_shown_as_point_one():
    assert shortest(np.float32(0.1)) == "0.1"
    assert float(np.float32(0.1)) != 0.1  # the float32 is not the float64 0.1, yet "0.1" reads back as it


def test_float64_point_one_and_its_neighbour():
    assert shortest(0.1) == "0.1"
    assert shortest(np.nextafter(0.1, 1.0)) == "0.10000000000000002"


def test_python_float_can_be_shown_in_float32():
    assert shortest(0.1, np.float32) == "0.1"
    assert shortest(1 / 3, "float32") == "0.33333334"  # float32(1/3) = 0.333333343267...


def test_float64_random_bit_patterns_round_trip():
    for value in random_floats(np.float64):
        text = shortest(value)
        assert float(text) == value, (value, text)


def test_float64_matches_pythons_shortest_repr():
    # Python's repr is the shortest round-tripping decimal (closest one on ties): an independent oracle.
    for value in random_floats(np.float64, seed=99):
        if np.isfinite(value):
            assert Decimal(shortest(value)) == Decimal(repr(float(value))), value


def test_float32_random_bit_patterns_round_trip_in_float32():
    for value in random_floats(np.float32):
        text = shortest(value)
        assert np.float32(text) == value, (value, text)
        assert np.signbit(np.float32(text)) == np.signbit(value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_decimal_with_one_digit_fewer_round_trips(dtype):
    checked = 0
    for value in random_floats(dtype, n=400, seed=7):
        if not np.isfinite(value) or value == 0:
            continue
        n = significant_digits(shortest(value))
        if n == 1:
            continue
        below, above = neighbours_with_fewer_digits(value, n - 1)
        assert below < Decimal(float(value)) < above
        assert dtype(str(below)) != value, (value, below)
        assert dtype(str(above)) != value, (value, above)
        checked += 1
    assert checked > 300


def test_float32_text_is_shorter_than_its_float64_text():
    # float32 needs at most 9 significant digits, float64 up to 17.
    values = random_floats(np.float32, n=500, seed=5)
    finite = values[np.isfinite(values) & (values != 0)]
    assert max(significant_digits(shortest(v)) for v in finite) <= 9
    assert max(significant_digits(shortest(float(v))) for v in finite) > 9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_zero_keeps_its_sign(dtype):
    text = shortest(dtype(-0.0))
    assert text.startswith("-")
    assert np.signbit(dtype(text))
    assert not shortest(dtype(0.0)).startswith("-")


def test_smallest_subnormals():
    assert shortest(np.float32(np.finfo(np.float32).smallest_subnormal)) == "1e-45"
    assert shortest(np.finfo(np.float64).smallest_subnormal) == "5e-324"
    assert shortest(-np.finfo(np.float64).smallest_subnormal) == "-5e-324"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite(dtype):
    assert shortest(dtype(np.inf)) == "inf"
    assert shortest(dtype(-np.inf)) == "-inf"
    assert shortest(dtype(np.nan)) == "nan"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123.5, "123.5"),
        (1e-4, "0.0001"),  # the smallest positional magnitude
        (1e15, "1000000000000000"),
        (1e16, "1e+16"),  # from here on scientific
        (1e-5, "1e-05"),
        (-2.5e-7, "-2.5e-07"),
        (6.02214076e23, "6.02214076e+23"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
    ],
)
def test_magnitude_picks_positional_or_scientific(value, expected):
    assert shortest(value) == expected


def test_integers_and_booleans_print_as_themselves():
    assert shortest(7) == "7"
    assert shortest(np.int32(-3)) == "-3"
    assert shortest(np.uint64(2**64 - 1)) == str(2**64 - 1)
    assert shortest(True) == "True"
    assert shortest(np.bool_(False)) == "False"


# --- exact_hex ----------------------------------------------------------------------------


def test_exact_hex_of_point_one():
    assert exact_hex(np.float32(0.1)) == "0x3dcccccd"
    assert exact_hex(0.1) == "0x3fb999999999999a"
    assert exact_hex(0.1, np.float32) == "0x3dcccccd"


def test_exact_hex_signs_and_specials():
    assert exact_hex(np.float32(-0.0)) == "0x80000000"
    assert exact_hex(0.0) == "0x0000000000000000"
    assert exact_hex(np.float32(np.inf)) == "0x7f800000"
    assert exact_hex(np.float32(1e-45)) == "0x00000001"
    assert exact_hex(np.float16(1.0)) == "0x3c00"


@pytest.mark.parametrize(("dtype", "uint"), [(np.float32, np.uint32), (np.float64, np.uint64)])
def test_exact_hex_round_trips_through_view(dtype, uint):
    width = np.dtype(dtype).itemsize * 2
    for value in random_floats(dtype, n=500, seed=11):
        text = exact_hex(value)
        assert len(text) == 2 + width
        back = np.array(int(text, 16), dtype=uint).view(dtype)
        assert back.tobytes() == np.asarray(value).tobytes()


def test_fmt_switches_between_decimal_and_bits():
    x = np.float32(0.1)
    assert fmt(x) == "0.1"
    assert fmt(x, hex_bits=True) == "0x3dcccccd"
    assert fmt_array(np.array([[0.1, -0.0]], dtype=np.float32)) == ["0.1", "-0"]
    assert fmt_array(np.array([0.1], dtype=np.float32), hex_bits=True) == ["0x3dcccccd"]


# --- align_decimal ------------------------------------------------------------------------


def point_column(text: str) -> int:
    """Where the decimal point is, or would be (before the exponent, or after the last digit)."""
    body = text.rstrip(" ")
    if "." in body:
        return text.index(".")
    if "e" in body:
        return text.index("e")
    return len(body)


def test_align_decimal_lines_up_points():
    texts = ["1.5", "10", "-0.25", "1e-05", "123.456", "inf", "2.5e+20"]
    out = align_decimal(texts)
    assert [t.strip() for t in out] == texts
    assert len({len(t) for t in out}) == 1
    assert len({point_column(t) for t in out}) == 1


def test_align_decimal_of_integers_is_right_alignment():
    assert align_decimal(["1", "100", "-7"]) == ["  1", "100", " -7"]


def test_align_decimal_empty():
    assert align_decimal([]) == []
