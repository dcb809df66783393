"""Typed messages from the engine worker to the UI thread."""

from __future__ import annotations

from textual.message import Message

from gradstep.tui.frame import Frame


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
