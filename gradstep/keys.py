"""Names of the tensors of a step, and their phases in compute order.

Batch, activation and loss tensors keep the scenario's own names; weights
appear twice (``"before w"``, ``"after w"``) and gradients as ``"grad w"``.
"""

from __future__ import annotations

PHASES = ("before", "input", "forward", "loss", "grad", "after")


def before(name: str) -> str:
    return f"before {name}"


def grad(name: str) -> str:
    return f"grad {name}"


def after(name: str) -> str:
    return f"after {name}"


def phase_of(key: str, inputs: set[str], losses: set[str]) -> str:
    """The phase a key belongs to, given the batch names and loss names of the step."""
    head, _, rest = key.partition(" ")
    if rest and head in ("before", "grad", "after"):
        return head
    if key in inputs:
        return "input"
    if key in losses:
        return "loss"
    return "forward"


def base_name(key: str) -> str:
    """``"grad w1"`` -> ``"w1"``; other keys unchanged."""
    head, _, rest = key.partition(" ")
    return rest if rest and head in ("before", "grad", "after") else key
