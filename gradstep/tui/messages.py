"""Typed messages from the engine worker to the UI thread."""

from __future__ import annotations

from textual.message import Message

from gradstep.tui.findings import Diagnosis
from gradstep.tui.frame import Frame
from gradstep.tui.patching import PatchOutcome


class FrameReady(Message):
    """A move finished: show this frame."""

    def __init__(self, frame: Frame) -> None:
        super().__init__()
        self.frame = frame


class RunProgress(Message):
    """A long run has done ``done`` of ``total`` steps."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done, self.total = done, total


class PatchDone(Message):
    """A patch move (apply, undo, redo, reset) finished: ``outcome.frame`` is set when it changed the run."""

    def __init__(self, outcome: PatchOutcome) -> None:
        super().__init__()
        self.outcome = outcome


class DiagnosisReady(Message):
    """The findings of one step, ranked; or (``stopped``) a diagnosis stopped before it ended."""

    def __init__(self, diagnosis: Diagnosis, stopped: bool = False) -> None:
        super().__init__()
        self.diagnosis = diagnosis
        self.stopped = stopped


class SessionSaved(Message):
    """The save key's job finished: the file written, or why it was not."""

    def __init__(self, path: str, error: str | None = None, notes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.path, self.error, self.notes = path, error, notes
