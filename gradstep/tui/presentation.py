"""Presentation mode as text: the few facts a room reads off a projector.

Nothing here touches Textual. The presentation heading shows a
:class:`PresentView`: the step (for big digits), the tensor and its status,
its worst element on both sides at full precision, the first divergence and
the first finding of the diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradstep.compare import Status, element_diffs
from gradstep.numfmt import fmt, shortest
from gradstep.tui.findings import CONFIDENCE_MARKS, Diagnosis
from gradstep.tui.frame import INITIAL, Frame, TensorEntry
from gradstep.tui.presenter import entry_view, status_view


@dataclass(frozen=True)
class PresentView:
    digits: str  # the step for the big digits: "0", "12"; "-" at the start, before any step
    context: str  # scenario, where in the run, device
    tensor: str  # "after w  (1, 1)"; "" when no tensor is selected
    status: Status | None
    worst: str  # "[0, 0]": where the worst element is ("" for a scalar)
    numpy: str
    torch: str
    difference: str  # "abs 0.12  rel 0.67", or why there is none ("torch only")
    divergence: str
    diverged: bool
    finding: str  # "step 0: ●●● <the cause's first sentence> (numpy.backward)", "" when there is none
    abs: str = ""  # the worst element's absolute difference, "" when there is none
    rel: str = ""


def present_view(frame: Frame, entry: TensorEntry | None, diagnosis: Diagnosis | None,
                 hex_bits: bool = False) -> PresentView:
    status = status_view(frame, hex_bits)
    digits = "-" if frame.step == INITIAL else str(frame.step)
    context = f"{status.scenario} · {status.position} · {status.where}"
    if entry is None:
        return PresentView(digits, context, "", None, "", "—", "—", "", status.divergence, status.diverged,
                           _finding(diagnosis))
    worst, numpy_text, torch_text, abs_text, rel_text = _worst(entry, hex_bits)
    difference = f"abs {abs_text}  rel {rel_text}" if abs_text else entry_view(entry).note
    return PresentView(digits, context, f"{entry.key}  {_shape(entry.shape)}", entry.status, worst, numpy_text,
                       torch_text, difference, status.divergence, status.diverged, _finding(diagnosis),
                       abs_text, rel_text)


def _worst(entry: TensorEntry, hex_bits: bool) -> tuple[str, str, str, str, str]:
    """Where the worst element is, its two values and their absolute and relative difference ("" when the
    elements do not pair up: one side only, or shapes that differ)."""
    if entry_view(entry).note:
        return "", _whole(entry.numpy), _whole(entry.torch), "", ""
    index = entry.worst_index if entry.worst_index is not None else (0,) * np.ndim(entry.numpy)
    a, b = np.asarray(entry.numpy)[index], np.asarray(entry.torch)[index]
    d = element_diffs(np.asarray([a]), np.asarray([b]), entry.tolerance)
    where = f"[{', '.join(map(str, index))}]" if index else ""
    return (where, fmt(a, hex_bits=hex_bits), fmt(b, hex_bits=hex_bits), shortest(float(d.abs[0])),
            shortest(float(d.rel[0])))


def _whole(value: np.ndarray | None) -> str:
    return "— (absent)" if value is None else f"shape {_shape(np.shape(value))}"


def _finding(diagnosis: Diagnosis | None) -> str:
    """The likeliest cause in one sentence (its first: the rest is in the pane), and the function it blames."""
    if diagnosis is None or not diagnosis.findings:
        return ""
    first = diagnosis.findings[0]
    sentence = first.cause.split(". ", 1)[0].rstrip(".") + "."
    blamed = f" ({first.function})" if first.function else ""
    return f"diagnosis, step {diagnosis.step}: {CONFIDENCE_MARKS[first.confidence_label]} {sentence}{blamed}"


def _shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "—"
    return str(tuple(shape)) if len(shape) else "scalar"
