"""A finding: one likely cause of a divergence, the numbers it rests on, and where it applies."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradstep.numfmt import fmt, json_number

SIDES = ("numpy", "torch", "both")


@dataclass(frozen=True)
class Finding:
    """One likely cause, in plain language, with its evidence.

    ``rule`` names the rule that made it (``"ratio"``, ``"accumulation"``...);
    ``cause`` is the sentence a person reads; ``evidence`` holds the numbers it
    rests on, already written at full precision; ``confidence`` is in [0, 1];
    ``step``, ``tensor``, ``side`` and ``function`` say where it applies (the
    scenario function likely at fault, e.g. ``"numpy.backward"``, or ``None``
    when the rule cannot tell). ``tensors`` lists every tensor key it explains
    and ``values`` the key numbers as floats, for programs. ``file`` and
    ``line`` locate the statement at fault when one is known.
    """

    rule: str
    cause: str
    evidence: tuple[str, ...]
    confidence: float
    step: int | None = None
    tensor: str | None = None
    side: str | None = None
    function: str | None = None
    tensors: tuple[str, ...] = ()
    values: Mapping[str, float] = field(default_factory=dict)
    file: str | None = None  # the scenario file and line the finding points at, when it points at one
    line: int | None = None

    @property
    def confidence_label(self) -> str:
        if self.confidence >= 0.8:
            return "high"
        return "medium" if self.confidence >= 0.5 else "low"

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: floats exact, NaN/Inf as strings."""
        return {
            "rule": self.rule,
            "cause": self.cause,
            "evidence": list(self.evidence),
            "confidence": round(float(self.confidence), 3),
            "confidence_label": self.confidence_label,
            "step": self.step,
            "tensor": self.tensor,
            "side": self.side,
            "function": self.function,
            "tensors": list(self.tensors),
            "values": {k: json_number(v) for k, v in self.values.items()},
            "file": self.file,
            "line": self.line,
        }


def num(value: Any, dtype: Any = None) -> str:
    """A number at full precision, in its own dtype (or ``dtype``)."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else math.nan
    if dtype is None and not isinstance(value, np.generic):
        value = float(value)
    return fmt(value, dtype)


def shape_text(shape: tuple[int, ...] | None) -> str:
    return "none" if shape is None else "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


