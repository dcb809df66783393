"""The gradstep debugger app, and the one factory that builds it for the CLI, the tests and the benchmark.

Every move that needs the engine runs on one thread worker at a time
(``@work(thread=True, exclusive=True, exit_on_error=False)``) calling the
:class:`~gradstep.tui.session.Debugger`, which posts a :class:`FrameReady`
back; the UI thread never touches the engine. Long runs report progress and
stop between steps when asked (``engine.run(cancelled=...)``); while one is
in flight the stepping bindings are disabled. A scenario error arrives as a
frame with ``error`` set: shown, and the app goes on.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import App
from textual.worker import Worker, WorkerState

from gradstep.engine import Engine
from gradstep.tui.bindings import ENGINE_BINDINGS, VIEW_BINDINGS
from gradstep.tui.frame import INITIAL, Frame
from gradstep.tui.keymap import load_keymap
from gradstep.tui.messages import FrameReady, RunProgress
from gradstep.tui.presenter import error_text
from gradstep.tui.screens import HelpScreen, MainScreen, NumberPrompt
from gradstep.tui.session import Debugger
from gradstep.tui.widgets import RunBar, TensorGrid

# Moves that need the engine: disabled (and dimmed in the footer) while a run is in flight.
_ENGINE_ACTIONS = {"step", "step_back", "jump", "continue_run", "run_nonfinite", "run_steps", "run_end"}
_QUEUE = 8  # single steps pressed ahead of the worker, kept rather than dropped


class GradstepApp(App[None]):
    CSS_PATH = "gradstep.tcss"
    TITLE = "gradstep"

    def __init__(self, engine: Engine, *, hex_bits: bool = False, keymap: dict[str, str] | None = None) -> None:
        super().__init__()
        self.debugger = Debugger(engine)
        self.frame: Frame | None = None
        self.view_step = INITIAL
        self.running = False  # a long run: bindings disabled, progress shown
        self.busy = False  # any engine job in flight
        self.last_error: str | None = None
        self.user_keymap = dict(keymap or {})
        self._cancel = threading.Event()
        self._queued: deque[str] = deque()
        self._main = MainScreen(hex_bits=hex_bits)

    def on_mount(self) -> None:
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        self.push_screen(self._main)
        self._start(lambda: self.debugger.show(INITIAL))

    @property
    def main(self) -> MainScreen:
        return self._main

    # ---- the one engine worker -------------------------------------------
    def _start(self, job: Callable[[], Frame], long_run: str | None = None) -> None:
        self.busy = True
        if long_run:
            self.running = True
            self._cancel.clear()
            self.main.query_one(RunBar).start(long_run, self._key_for("interrupt", "escape"))
            self.refresh_bindings()
        self._engine_job(job)

    @work(thread=True, exclusive=True, exit_on_error=False, group="engine")
    def _engine_job(self, job: Callable[[], Frame]) -> None:
        self.post_message(FrameReady(job()))

    def _progress(self) -> Callable[[int, int], None]:
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.1 or done == total:
                last[0] = now
                self.post_message(RunProgress(done, total))

        return progress

    @on(FrameReady)
    def _frame_ready(self, message: FrameReady) -> None:
        frame = message.frame
        if self.frame is None:
            # Everything loaded so far (torch, the scenario, Textual) lives as long as the app: keep it out of
            # the cyclic collector's full passes, which otherwise stall a step press by ~150 ms now and then.
            gc.freeze()
        if frame.error is not None:
            self.last_error = error_text(frame.error)
            self._queued.clear()
        elif self.frame is not None and frame.frontier > self.frame.frontier:
            self.last_error = None
        self.frame, self.view_step = frame, frame.step
        self.main.show_frame(frame, self.last_error)
        if frame.notice:
            self.notify(frame.notice, timeout=4)

    @on(RunProgress)
    def _run_progress(self, message: RunProgress) -> None:
        self.main.query_one(RunBar).advance(message.done, message.total)

    @on(Worker.StateChanged)
    def _worker_done(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "engine" or event.state not in (
                WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if event.state == WorkerState.ERROR:
            self._queued.clear()
            self.notify(f"{type(event.worker.error).__name__}: {event.worker.error}", title="gradstep error",
                        severity="error", timeout=10)
        self.busy = False
        if self.running:
            self.running = False
            self.main.query_one(RunBar).stop()
            self.refresh_bindings()
        if self._queued:
            move = self._queued.popleft()
            (self.action_step if move == "step" else self.action_step_back)()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "interrupt":
            return self.running  # shown only while a run is in flight
        if action in _ENGINE_ACTIONS and self.running:
            return None  # shown, dimmed
        return True

    def _key_for(self, binding_id: str, default: str) -> str:
        return self.user_keymap.get(binding_id, default)

    # ---- moves -----------------------------------------------------------
    def _queue_or_start(self, move: str, job: Callable[[], Frame]) -> None:
        if self.busy:
            if not self.running and len(self._queued) < _QUEUE:
                self._queued.append(move)
            return
        self._start(job)

    def action_step(self) -> None:
        view = self.view_step
        self._queue_or_start("step", lambda: self.debugger.forward(view))

    def action_step_back(self) -> None:
        view = self.view_step
        self._queue_or_start("back", lambda: self.debugger.back(view))

    def action_continue_run(self) -> None:
        self._long("running to the first divergence", lambda p, c: self.debugger.run(None, "divergence",
                                                                                     self.view_step, p, c))

    def action_run_nonfinite(self) -> None:
        self._long("running to the first NaN/Inf", lambda p, c: self.debugger.run(None, "nonfinite",
                                                                                   self.view_step, p, c))

    def action_run_end(self) -> None:
        self._long("running to the end", lambda p, c: self.debugger.run(None, None, self.view_step, p, c))

    def action_jump(self) -> None:
        if self.busy:
            return
        total = self.debugger.engine.total_steps

        def chosen(step: int | None) -> None:
            if step is not None:
                view = self.view_step
                self._long(f"running to step {step}", lambda p, c: self.debugger.goto(step, view, p, c))

        self.push_screen(NumberPrompt("Go to step (-1: the initial weights)", INITIAL, total - 1), chosen)

    def action_run_steps(self) -> None:
        if self.busy:
            return
        remaining = max(1, self.debugger.engine.total_steps - 1 - self.view_step)

        def chosen(count: int | None) -> None:
            if count is not None:
                view = self.view_step
                self._long(f"running {count} steps", lambda p, c: self.debugger.goto(view + count, view, p, c))

        self.push_screen(NumberPrompt("Run how many steps on", 1, remaining, default=min(100, remaining)), chosen)

    def _long(self, what: str, job: Callable) -> None:
        if self.busy:
            return
        progress, cancelled = self._progress(), self._cancel.is_set
        self._start(lambda: job(progress, cancelled), long_run=what)

    def action_interrupt(self) -> None:
        if self.running:
            self._cancel.set()

    def action_help(self) -> None:
        sections = [
            ("Stepping and running", ENGINE_BINDINGS),
            ("Looking", VIEW_BINDINGS),
            ("Moving in the tensor", list(TensorGrid.BINDINGS)),
        ]
        self.push_screen(HelpScreen(sections, self.user_keymap))

    async def action_quit(self) -> None:
        self._cancel.set()  # a run in flight stops at its next step
        self.exit()


def create_app(engine: Engine, *, hex_bits: bool = False, keymap: dict[str, str] | None = None,
               keymap_file: Path | None = None, user_keymap: bool = False) -> GradstepApp:
    """The app for ``engine``: the CLI passes ``user_keymap=True`` to read the user's keymap file."""
    keys = dict(load_keymap(keymap_file) if (user_keymap or keymap_file) else {})
    keys.update(keymap or {})
    return GradstepApp(engine, hex_bits=hex_bits, keymap=keys)
