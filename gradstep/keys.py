"""Names of the tensors of a step, and their phases in compute order.

Batch, activation and loss tensors keep the scenario's own names; weights
appear twice (``"before w"``, ``"after w"``), gradients as ``"grad w"`` and the
step's change to a weight, ``after - before``, as ``"update w"``: an update far
below the weights' tolerance (a learning rate 5% off) is judged on its own scale.
"""

from __future__ import annotations

PHASES = ("before", "input", "forward", "loss", "grad", "update", "after")
_WEIGHT_HEADS = ("before", "grad", "update", "after")
RECORDED_HEADS = ("before", "update", "after")  # what gradstep records of a weight itself, never a step's output


def before(name: str) -> str:
    return f"before {name}"


def grad(name: str) -> str:
    return f"grad {name}"


def update(name: str) -> str:
    return f"update {name}"


def after(name: str) -> str:
    return f"after {name}"


def phase_of(key: str, inputs: set[str], losses: set[str]) -> str:
    """The phase a key belongs to, given the batch names and loss names of the step."""
    head, _, rest = key.partition(" ")
    if rest and head in _WEIGHT_HEADS:
        return head
    if key in inputs:
        return "input"
    if key in losses:
        return "loss"
    return "forward"


def base_name(key: str) -> str:
    """``"grad w1"`` -> ``"w1"``; other keys unchanged."""
    head, _, rest = key.partition(" ")
    return rest if rest and head in _WEIGHT_HEADS else key
