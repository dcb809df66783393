"""Plain-language pieces the rules share: which function computes a key, how to say a factor."""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

import numpy as np

from gradstep.compare import Status, TensorComparison
from gradstep.diagnosis.findings import Finding, num, shape_text

FUNCTION_OF_PHASE = {"before": "init", "input": "data", "forward": "forward", "loss": "loss", "grad": "backward",
                     "update": "update", "after": "update"}


def function_for(side: str, phase: str) -> str:
    """The scenario function that produces a key of ``phase`` on ``side`` (``init`` is shared)."""
    fn = FUNCTION_OF_PHASE.get(phase, "forward")
    return fn if fn in ("init", "data") else f"{side}.{fn}"


def factor_text(r: float) -> str:
    """``2`` for 2, ``1/4`` for 0.25, else the number at full precision."""
    if r == 0 or not np.isfinite(r):
        return num(r)
    sign = "-" if r < 0 else ""
    a = abs(r)
    frac = Fraction(a).limit_denominator(4096)
    if frac != 0 and abs(float(frac) - a) <= 1e-9 * a:
        if frac.denominator == 1:
            return f"{sign}{frac.numerator}"
        if frac.numerator == 1:
            return f"{sign}1/{frac.denominator}"
        return f"{sign}{frac.numerator}/{frac.denominator}"
    return num(r)


def nice(value: float, precision: float = 1e-9) -> str:
    """A fitted number for a sentence: its shortest form within ``precision`` of it, relatively (0.05 for
    0.05000000000000003; 0.9 for a float32 fit's 0.8999999725 at 1e-5), else full precision."""
    for digits in range(1, 11):
        short = float(f"{value:.{digits}g}")
        if abs(short - value) <= precision * abs(value):
            return num(short) if short != 0.0 else "0"
    return num(value)


def times_text(r: float) -> str:
    """How many times the other side's a value is: ``2×``, ``1/2×``."""
    return f"{factor_text(r)}×"


def relation_text(r: float, what: str) -> str:
    """``NumPy's gradients are 4× torch's`` (r = numpy/torch = 4), or the other way round when |r| < 1."""
    if r != 0 and abs(r) < 1:
        return f"torch's {what} are {times_text(1 / r)} NumPy's"
    return f"NumPy's {what} are {times_text(r)} torch's"


def worst_line(c: TensorComparison) -> str:
    """The worst element of a comparison, both values at full precision."""
    if c.status == Status.ONE_SIDE:
        return c.note
    if c.worst_index is None:
        return f"{c.key}: shapes numpy {shape_text(c.numpy_shape)}, torch {shape_text(c.torch_shape)}"
    return (f"{element(c.key, c.worst_index)}: numpy {num(c.worst_numpy, c.numpy_dtype)} ({c.numpy_dtype}), "
            f"torch {num(c.worst_torch, c.torch_dtype)} ({c.torch_dtype}); {c.n_bad} of {c.size} elements out of "
            f"tolerance, greatest abs difference {num(c.max_abs)}, rel {num(c.max_rel)}")


def element(name: str, index: tuple[int, ...] | None) -> str:
    """``w[0, 1]``; a 0-d tensor is just its name."""
    return f"{name}{list(index)}" if index else name


def join_names(names: list[str] | tuple[str, ...], limit: int = 6) -> str:
    names = list(names)
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return ", ".join(names)


_PIECE = re.compile(r"\b(numpy|torch)\.(forward|loss|backward|update)\b")
_PART_OF_STEP = {"forward": "its forward", "loss": "its loss", "backward": "its gradients", "update": "its update"}


def in_step_terms(finding: Finding, step_sides: set[str]) -> Finding:
    """A finding about a side written as one step function, naming that function instead of its pieces.

    Rules speak of ``numpy.backward`` or ``torch.loss``; a side with a step
    function has none: ``numpy.step (its gradients)`` in sentences, and
    ``numpy.step`` as the function to patch.
    """
    if not step_sides:
        return finding

    def words(match: re.Match[str]) -> str:
        side, piece = match.group(1), match.group(2)
        return f"{side}.step ({_PART_OF_STEP[piece]})" if side in step_sides else match.group(0)

    def name(match: re.Match[str]) -> str:
        return f"{match.group(1)}.step" if match.group(1) in step_sides else match.group(0)

    function = _PIECE.sub(name, finding.function) if finding.function else finding.function
    return dataclasses.replace(finding, cause=_PIECE.sub(words, finding.cause),
                               evidence=tuple(_PIECE.sub(words, e) for e in finding.evidence), function=function)
