"""Frames as text: every number through :mod:`gradstep.numfmt`, so widgets only get strings.

Nothing here touches Textual: the main screen hands these views to its widgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from gradstep.compare import Status
from gradstep.numfmt import fmt, shortest
from gradstep.safe_text import printable
from gradstep.tui.frame import INITIAL, ErrorInfo, Frame, TensorEntry
from gradstep.tui.patching import change_text


@dataclass(frozen=True)
class EntryView:
    key: str
    phase: str
    status: Status
    shape: str
    worst: str  # the greatest absolute difference, "" when exactly equal or not comparable
    out_of_tolerance: bool
    note: str = ""  # instead of a difference: "torch only", "NumPy (3, 2) vs torch (2, 2)"


@dataclass(frozen=True)
class StatusView:
    scenario: str
    position: str
    where: str
    losses: str
    divergence: str
    diverged: bool
    patches: str = ""  # "patches: numpy.backward, torch.loss", "" when none is in force
    read_only: str = ""  # "read-only: FILE-NAME" for a saved session, "" for a live run


def entry_view(entry: TensorEntry) -> EntryView:
    note = worst = ""
    if not entry.recorded:  # a saved session's summary row: the worst difference is known, the elements not
        note = "summary only"
        worst = shortest(entry.max_abs) if entry.max_abs else ""
    elif entry.status == Status.ONE_SIDE:
        note = f"{'NumPy' if entry.numpy is not None else 'torch'} only"
    elif entry.status == Status.SHAPE:
        note = f"NumPy {_shape(entry.numpy)} vs torch {_shape(entry.torch)}"
    elif entry.max_abs:
        worst = shortest(entry.max_abs)
    shape = _shape(entry.numpy if entry.numpy is not None else entry.torch)
    return EntryView(entry.key, entry.phase, entry.status, shape, worst, entry.out_of_tolerance, note)


def status_view(frame: Frame, hex_bits: bool = False) -> StatusView:
    if frame.step == INITIAL:
        position = f"start (initial weights) · {frame.frontier}/{frame.total} run"
    else:
        position = f"step {frame.step} (epoch {frame.epoch}, batch {frame.batch}) · {frame.frontier}/{frame.total} run"
    tf32 = "" if frame.tf32 is None else f" TF32 {'on' if frame.tf32 else 'off'}"
    where = f"{frame.device} {frame.dtype}{tf32}"
    if frame.step == INITIAL:
        losses = "loss: none yet (no step run)"
    else:
        losses = f"loss NumPy {_maybe(frame.loss_numpy, hex_bits)}  torch {_maybe(frame.loss_torch, hex_bits)}"
    mark = "✗ " if frame.first_divergence is not None else ""
    if frame.replayed:  # after a patch move: how the first divergence moved
        divergence = mark + change_text(frame.divergence_before, frame.first_divergence)
    elif frame.first_divergence is None and frame.frontier >= frame.total:
        divergence = f"no divergence: {'the' if frame.total == 1 else 'all'} {steps_text(frame.total)} within tolerance"
    elif frame.first_divergence is None and frame.frontier == 0:
        divergence = "first divergence: none yet (no step run)"
    elif frame.first_divergence is None:
        divergence = f"first divergence: none in the {steps_text(frame.frontier)} run so far"
    else:
        step, tensor = frame.first_divergence
        divergence = f"✗ first divergence: step {step}, {tensor}"
    patches = f"patches: {', '.join(frame.patches)}" if frame.patches else ""
    # The file's name: the status line is one line at 80 columns; the title has the whole path.
    read_only = f"read-only: {printable(PurePath(frame.recorded_from).name)}" if frame.recorded_from else ""
    return StatusView(f"{frame.scenario} ({frame.variant})", position, where, losses, divergence,
                      frame.first_divergence is not None, patches, read_only)


def error_text(error: ErrorInfo) -> str:
    at = "" if error.step is None else f" at step {error.step}"
    return (f"✗ error{at} in the {error.side} side's {error.function} ({error.location}): {error.message}"
            " — the view stays on the last good step, which you can step back from")


def tensor_title(entry: TensorEntry, slice_label: str) -> str:
    """``after w  (1, 1) · 1 out of tolerance · rtol 1e-07 atol 1e-07``; the slice of a rank > 2 tensor."""
    parts = [f"{entry.key}  {_shape(entry.numpy if entry.numpy is not None else entry.torch)}"]
    if entry.numpy is not None and entry.torch is not None and _shape(entry.numpy) != _shape(entry.torch):
        parts[0] += f" (torch {_shape(entry.torch)})"
    if slice_label:
        parts.append(slice_label)
    if not entry.recorded:
        parts.append("summary only: its elements were not saved")
    if entry.n_bad:
        parts.append(f"{entry.n_bad} out of tolerance")
    if entry.verdict:
        parts.append(entry.verdict)
    parts.append(f"rtol {shortest(entry.tolerance.rtol)} atol {shortest(entry.tolerance.atol)}")
    return " · ".join(parts)


def _shape(value) -> str:
    if value is None:
        return "—"
    shape = tuple(int(n) for n in getattr(value, "shape", ()))
    return str(shape) if shape else "scalar"


def _maybe(value, hex_bits: bool) -> str:
    return "—" if value is None else fmt(value, hex_bits=hex_bits)


def steps_text(count: int, signed: bool = False) -> str:
    """"1 step", "3 steps"; signed, a move: "+1 step", "-3 steps"."""
    return (f"{count:+d}" if signed else f"{count}") + (" step" if abs(count) == 1 else " steps")
