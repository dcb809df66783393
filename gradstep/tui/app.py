"""The gradstep debugger app, and the one factory that builds it for the CLI, the tests and the benchmark.

Every move that needs the engine runs on one thread worker at a time
(``@work(thread=True, exclusive=True, exit_on_error=False)``) calling the
:class:`~gradstep.tui.session.Debugger`, which posts a :class:`FrameReady`
back; the UI thread never touches the engine. Long runs report progress and
stop between steps when asked (``engine.run(cancelled=...)``); while one is
in flight the stepping bindings are disabled. A scenario error arrives as a
frame with ``error`` set: shown, and the app goes on.

The same worker validates and replays patches (a :class:`PatchDone` comes
back; a replay is a long run: progress, escape cancels it and keeps the
previous engine) and runs the diagnosis, once per engine at its first
divergence and on the ``diagnose`` key at the step shown, when no other job is
in flight (:class:`DiagnosisReady`). A diagnosis never holds the worker
against the user: a step, a run, a patch or a save stops it at once (the job
stopper) and it starts again when the worker is free; escape stops it for
good.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import App
from textual.message import Message
from textual.worker import Worker, WorkerState

from gradstep.device import release_device_memory
from gradstep.diagnosis import Finding
from gradstep.engine import Engine
from gradstep.patch import Patch, source_of, source_row
from gradstep.safe_text import printable
from gradstep.stoppable import JobStopper, Stopped, guard_exits
from gradstep.tui.bindings import (
    DIAGNOSIS_BINDINGS,
    EDITOR_BINDINGS,
    ENGINE_BINDINGS,
    PATCH_BINDINGS,
    SHOW_BINDINGS,
    VIEW_BINDINGS,
)
from gradstep.tui.findings import Diagnosis
from gradstep.tui.frame import INITIAL, ErrorInfo, Frame
from gradstep.tui.keymap import load_keymap
from gradstep.tui.messages import DiagnosisReady, FrameReady, PatchDone, RunProgress, SessionSaved
from gradstep.tui.patching import PatchOutcome
from gradstep.tui.presenter import error_text, steps_text
from gradstep.tui.screens import HelpScreen, MainScreen, NumberPrompt, PatchEditor
from gradstep.tui.screens.help import key_display
from gradstep.tui.screenshot import screenshot_path
from gradstep.tui.session import Debugger
from gradstep.tui.terminal import Terminal, arm_hard_exit
from gradstep.tui.widgets import FindingList, RunBar, TensorGrid

# Moves that need the engine: disabled (and dimmed in the footer) while a run is in flight.
_ENGINE_ACTIONS = {"step", "step_back", "jump", "continue_run", "run_nonfinite", "run_steps", "run_end",
                   "edit_patch", "undo_patch", "redo_patch", "reset_patches", "save_session"}
_DEFAULT_KEYS = {b.id: b.key for b in (*ENGINE_BINDINGS, *PATCH_BINDINGS, *DIAGNOSIS_BINDINGS, *EDITOR_BINDINGS,
                                       *SHOW_BINDINGS, *VIEW_BINDINGS, *FindingList.BINDINGS)}
SLOW_JOB_S = 0.2  # a job still running after this long shows that it runs, and how to stop it
NOTICE_S, ERROR_NOTICE_S = 3, 6  # toasts are short: they sit over the diagnosis and must not outlive a screenshot
SAVED_PATCHES_NOTICE_S = 20  # the one toast that says where an earlier session's patches are kept: time to read it
_STOP_AFTER = 0.3  # seconds after escape: a job still inside the user's code is stopped there (or, live, offered)
_ABANDON_AFTER = 2.0  # seconds after a stop: a job still running is stuck in a C call, and left behind


class GradstepApp(App[None]):
    CSS_PATH = "gradstep.tcss"
    TITLE = "gradstep"

    def __init__(self, engine: Engine, *, hex_bits: bool = False, keymap: dict[str, str] | None = None,
                 present: bool = False) -> None:
        super().__init__()
        self.debugger = Debugger(engine)
        self.frame: Frame | None = None
        self.view_step = INITIAL
        self.running = False  # a long run: bindings disabled, progress shown
        self.busy = False  # any engine job in flight
        self.stoppable = False  # its bar is shown (a run, or a job that is slow): escape offered in the footer too
        self.last_error: str | None = None
        self.user_keymap = dict(keymap or {})
        self._cancel = threading.Event()
        self._slow_label = ""  # what the job in flight does, for the bar once it is slow
        self._pending = 0  # steps pressed (forward +, back -) while a job ran: one move when it ends
        self._deferred: Callable[[], None] | None = None  # a patch move asked for while a short job ran
        self._main = MainScreen(hex_bits=hex_bits, present=present)
        self.diagnosis: Diagnosis | None = None
        self._diagnosis_wanted: tuple[int | None] | None = None  # (the step, or None: the first divergence)
        self._diagnosing: int | None = None  # the step being diagnosed, for the pane's title
        self._auto_diagnosed = -1  # the engine generation whose first divergence was diagnosed
        self._diagnosis_running: tuple[int | None] | None = None  # what the job in flight diagnoses, if it does
        self._diagnosis_again = False  # it was stopped to make way for a move, and is wanted again
        self._again_for: int | None = None  # the engine generation it is wanted again for (a patch drops it)
        # Jobs run the user's code: escape or quit stops one even inside a call that never returns.
        self._stopper = JobStopper()
        self._job = 0  # the serial number of the job in flight (or the last one): a timer knows if it is still it
        self._job_kind = "engine"  # "engine": a move of the live engine; "patch": a validation and replay; "other"
        self._worker: Worker | None = None
        self._abandoned: set[int] = set()  # jobs stuck in a call that cannot be interrupted, left behind
        self._leaving = False
        self._terminal = Terminal()  # as it was before the app: put back on a signal, or a stuck thread at quit

    def on_mount(self) -> None:
        guard_exits()  # os._exit in a patch or a scenario function ends its job, not the app
        if not self.is_headless:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(signum, self._signalled, signum)
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        if self.recorded_from is not None:
            self.title = f"gradstep · read-only: recorded session {printable(self.recorded_from)}"
        self.push_screen(self._main)
        self._start(lambda: self.debugger.show(INITIAL))
        for note in self.debugger.patches.start_notes(self.key_names("edit_patch"), self.key_names("patch_apply")):
            self.notify(note, title="saved patches", timeout=SAVED_PATCHES_NOTICE_S, markup=False)

    @property
    def main(self) -> MainScreen:
        return self._main

    # ---- the one engine worker -------------------------------------------
    def _start(self, job: Callable[[], Frame | Message], long_run: str | None = None,
               slow: str = "working", stopped: Callable[[Stopped], Frame | Message] | None = None,
               kind: str = "engine") -> None:
        """Run ``job`` on the engine worker; a long run shows its bar at once, any other job once it is slow
        (``slow`` says what it does). ``stopped`` makes its result if escape or quit stops it inside the user's
        code (by default: a move of the live engine, which then cannot go on past that step).

        ``kind``: "engine", a move of the live engine (stopped inside a step only when asked twice); "patch"
        or "other", work on copies (a replay, a diagnosis, a save), safe to stop anywhere."""
        self.busy = True
        self._job += 1
        self._job_kind = kind
        self._cancel.clear()
        view, serial = self.view_step, self._job
        if long_run:
            self.running = self.stoppable = True
            for bar in self._run_bars():
                bar.start(long_run, self._key_for("interrupt", "escape"))
            self.refresh_bindings()
        else:  # a single move the user's code makes slow (or endless): shown, and escape stops it
            self._slow_label = slow
            self.set_timer(SLOW_JOB_S, lambda: self._slow_job(serial))
        self._worker = self._engine_job(job, stopped or (lambda stop: self.debugger.halt(view, stop)), serial)

    def _slow_job(self, serial: int) -> None:
        """A step (or diagnosis) still running after SLOW_JOB_S: say so, and that escape drops what is queued
        (a step in flight lands) or stops it (work on copies)."""
        if self.busy and not self.running and serial == self._job and not self._leaving:
            stops = "stops after it" if self._job_kind == "engine" else "stops"
            for bar in self._run_bars():
                bar.start(f"{self._slow_label}…{self._queued_text()}", self._key_for("interrupt", "escape"),
                          stops=stops)
            self.stoppable = True
            self.refresh_bindings()

    def _queued_text(self) -> str:
        return f" ({steps_text(self._pending, signed=True)} queued)" if self._pending else ""

    def _drop_pending(self, why: str | None = None) -> str:
        """Forget the steps pressed while a job ran: what was dropped, in words ("" for nothing); with ``why``,
        also said in a toast (nothing pressed goes without a word)."""
        by, self._pending = self._pending, 0
        if not by:
            return ""
        if why is not None:
            self.notify(f"{steps_text(by, signed=True)} queued, dropped: {why}", timeout=NOTICE_S, markup=False)
        return f"{steps_text(by, signed=True)} queued"

    @work(thread=True, exclusive=True, exit_on_error=False, group="engine")
    def _engine_job(self, job: Callable[[], Frame | Message], stopped: Callable[[Stopped], Frame | Message],
                    serial: int) -> None:
        result = self._stopper.run(job, lambda stop: None if self._leaving else stopped(stop))
        if result is None or serial in self._abandoned:
            return  # quitting; or a job left behind, whose moment has passed
        self.post_message(result if isinstance(result, Message) else FrameReady(result))

    def _run_bars(self) -> list[RunBar]:
        editor = self.editor
        return [self.main.query_one(RunBar), *([editor.query_one(RunBar)] if editor is not None else [])]

    @property
    def editor(self) -> PatchEditor | None:
        return next((s for s in self.screen_stack if isinstance(s, PatchEditor)), None)

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
            self._drop_pending("the scenario's code stopped on an error")
        elif self.frame is not None and (frame.frontier > self.frame.frontier
                                         or frame.generation != self.frame.generation):
            self.last_error = None
        self.frame, self.view_step = frame, frame.step
        self.main.show_frame(frame, self.last_error)
        if frame.notice:
            self.notify(frame.notice, timeout=NOTICE_S, markup=False)  # it quotes tensor names
        self._diagnosis_for(frame)

    @on(RunProgress)
    def _run_progress(self, message: RunProgress) -> None:
        for bar in self._run_bars():
            bar.advance(message.done, message.total)
        if self.editor is not None:
            self.editor.show_progress(message.done, message.total)

    @on(Worker.StateChanged)
    def _worker_done(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._worker or event.state not in (
                WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return  # another group's, or a job left behind
        if event.state == WorkerState.ERROR:
            self.notify(printable(f"{type(event.worker.error).__name__}: {event.worker.error}"),
                        title="gradstep error", severity="error", timeout=ERROR_NOTICE_S, markup=False)
            self._drop_pending("the job failed")
        self._job_over()

    def _job_over(self) -> None:
        """The engine is free: the next move queued, deferred or wanted starts."""
        self._worker = None
        self._diagnosis_running = None  # (its message came first, unless the job failed)
        was_shown = self.stoppable
        self.busy = self.running = self.stoppable = False
        for bar in self._run_bars():
            bar.stop()
        if was_shown:  # the footer offered escape with the bar; a quick step never touches the footer
            self.refresh_bindings()
        if self._pending:
            self._pending_move()
        elif self._deferred is not None:
            deferred, self._deferred = self._deferred, None
            deferred()
        else:
            self._start_diagnosis()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "interrupt":
            return self.stoppable  # with the bar: while a run, or a job that has been slow, is in flight
        if action in _ENGINE_ACTIONS and self.running:
            return None  # shown, dimmed
        return True

    def _key_for(self, binding_id: str, default: str) -> str:
        return self.user_keymap.get(binding_id, default)

    def key_names(self, binding_id: str) -> str:
        """The keys of a binding as the user has them, for messages: ``ctrl+r f5``."""
        return key_display(self.user_keymap.get(binding_id) or _DEFAULT_KEYS.get(binding_id, "?"))

    # ---- moves -----------------------------------------------------------
    def _queue_or_start(self, by: int, job: Callable[[], Frame]) -> None:
        """Start a single step now, or, while a job runs, count it: presses are added up, never dropped."""
        if self.busy:
            if not self.running:
                self._pending += by
                for bar in self._run_bars():
                    bar.relabel(f"{self._slow_label}…{self._queued_text()}")
                self._make_way()
            return
        self._start(job, slow=f"stepping to step {max(INITIAL, self.view_step + by)}")

    def action_step(self) -> None:
        view = self.view_step
        self._queue_or_start(1, lambda: self.debugger.forward(view))

    def action_step_back(self) -> None:
        view = self.view_step
        self._queue_or_start(-1, lambda: self.debugger.back(view))

    def _pending_move(self) -> None:
        """The steps pressed while a job ran, as one move: ``n`` held 42 times goes 42 steps on."""
        by, self._pending = self._pending, 0
        if by == 1:
            self.action_step()
            return
        if by == -1:
            self.action_step_back()
            return
        view, last = self.view_step, self.debugger.engine.total_steps - 1
        target = max(INITIAL, min(view + by, last))
        if target != view + by:
            edge = "the start" if by < 0 else f"the last step ({last})"
            self.notify(f"{abs(view + by - target)} of {abs(by)} presses went past {edge}: stopped there",
                        timeout=NOTICE_S)
        if target == view:
            return
        self._long(f"stepping {by:+d} steps to step {target}",
                   lambda p, c: self.debugger.goto(target, view, p, c))

    def action_continue_run(self) -> None:
        self._long("running to the first divergence", lambda p, c: self.debugger.run(None, "divergence",
                                                                                     self.view_step, p, c))

    def action_run_nonfinite(self) -> None:
        self._long("running to the first NaN/Inf", lambda p, c: self.debugger.run(None, "nonfinite",
                                                                                   self.view_step, p, c))

    def action_run_end(self) -> None:
        self._long("running to the end", lambda p, c: self.debugger.run(None, None, self.view_step, p, c))

    def action_jump(self) -> None:
        if self.busy and self._diagnosis_running is None:  # (a diagnosis makes way once the step is chosen)
            return
        total = self.debugger.engine.total_steps

        def chosen(step: int | None) -> None:
            if step is not None:
                view = self.view_step
                self._long(f"running to step {step}", lambda p, c: self.debugger.goto(step, view, p, c))

        self.push_screen(NumberPrompt("Go to step (-1: the initial weights)", INITIAL, total - 1), chosen)

    def action_run_steps(self) -> None:
        if self.busy and self._diagnosis_running is None:
            return
        remaining = max(1, self.debugger.engine.total_steps - 1 - self.view_step)

        def chosen(count: int | None) -> None:
            if count is not None:
                view = self.view_step
                self._long(f"running {count} steps", lambda p, c: self.debugger.goto(view + count, view, p, c))

        self.push_screen(NumberPrompt("Run how many steps on", 1, remaining, default=min(100, remaining)), chosen)

    def _long(self, what: str, job: Callable, patch_move: str | None = None, target: str | None = None) -> None:
        """A run with progress that escape stops; ``patch_move``: a patch's validation and replay."""
        if self.busy:
            if self._make_way():
                self._deferred = lambda: self._long(what, job, patch_move, target)
            return
        progress, cancelled = self._progress(), self._cancel.is_set
        if patch_move is None:
            self._start(lambda: job(progress, cancelled), long_run=what)
            return

        def stopped(stop: Stopped) -> PatchDone:
            return PatchDone(PatchOutcome("stopped", patch_move, target, "stopped: nothing changed"))

        self._start(lambda: job(progress, cancelled), long_run=what, stopped=stopped, kind="patch")

    def action_interrupt(self) -> None:
        """Escape: a run stops at its next step; a single step in flight lands, and what is queued goes (said on
        the bar). A job still inside the user's code a moment later is stopped there if it works on copies (a
        replay, a diagnosis, a save); a move of the live engine only when asked twice (that step then cannot be
        finished)."""
        if not self.busy:
            return
        if self._cancel.is_set():  # asked again: now, inside the step
            self._stop_now()
            return
        self._cancel.set()
        dropped = self._drop_pending()
        if not self.running:
            lands = "the step in flight lands, " if self._job_kind == "engine" else ""
            queued = f"the {dropped} are dropped" if dropped else "nothing queued runs after it"
            for bar in self._run_bars():  # no key offered yet: escape again would stop a step that only is slow
                bar.relabel(f"stopping: {lands}{queued}", stops="")
        serial = self._job
        self.set_timer(_STOP_AFTER, lambda: self._still_running(serial))

    def _still_running(self, serial: int) -> None:
        if serial != self._job or not self.busy or self._leaving:
            return
        if self._job_kind != "engine":  # nothing is committed before its end: stopping it anywhere is safe
            self._stop_now()
            return
        step, again = self.debugger.engine.next_step, self.key_names("interrupt")
        for bar in self._run_bars():
            bar.relabel(f"step {step}: still inside the scenario's code", stops=f"{again} again stops it there")
        self.notify(f"still inside the scenario's code at step {step}: {again} again stops it there (the run "
                    "then cannot go on past that step)", title="stopping", timeout=NOTICE_S, markup=False)

    def _stop_now(self) -> None:
        serial = self._job
        if self._stopper.stop():
            self.set_timer(_ABANDON_AFTER, lambda: self._abandon(serial))

    def _abandon(self, serial: int) -> None:
        """A stopped job that still runs is inside a C call that never returns: leave it, free the app."""
        if serial != self._job or not self.busy or self._leaving:
            return
        self._abandoned.add(serial)
        self._stopper = JobStopper()  # the old one stays with the thread left behind; jobs from now on get theirs
        self._drop_pending("the job in flight is stuck in the scenario's code")
        stuck = ("stuck in a call that cannot be interrupted (a C function that does not return, such as a "
                 "sleep): it is left behind and ends when the process does")
        if self._job_kind == "patch":
            self._patch_done(PatchDone(PatchOutcome("stopped", "apply", None, f"the patch is {stuck}; nothing "
                                                    "changed, the previous run and its patches stay")))
        elif self._job_kind == "other":
            self.notify(f"the scenario's code is {stuck}", severity="warning", timeout=ERROR_NOTICE_S, markup=False)
        else:  # the live engine is half-way through a step: it goes no further; show why
            self.debugger.halted = ErrorInfo(self.debugger.engine.next_step, "?", "code", "?",
                                             f"the scenario's code is {stuck}; the run cannot go on past this step")
            view, waiting = self.view_step, self._deferred

            def show_halted() -> None:
                self._deferred = waiting  # a move asked for meanwhile comes after
                self._start(lambda: self.debugger.show(view).with_(error=self.debugger.halted))

            self._deferred = show_halted
        self._job_over()

    # ---- patches: the editor, apply, undo, redo, reset (each a replay) ----------------
    def action_edit_patch(self) -> None:
        if self.running or self._refused_read_only("patching"):
            return
        session = self.debugger.patches
        # A draft left unapplied reopens where it was left; else the formula the first finding blames, on its line.
        draft = session.last_target if session.last_target in session.drafts else None
        finding = self._suggested_finding(session.targets)
        target = (draft or (finding.function if finding else None) or session.last_target
                  or _first_gradient(session.targets))
        row = None
        if finding is not None and target == finding.function and session.source(target) == source_of(
                session.base, target):  # the function as written: the diagnosis's line is where it was
            row = source_row(session.base, target, finding.file, finding.line)
        scenario = f"{session.base.name} ({session.base.variant})"
        self.push_screen(PatchEditor(session, target, scenario, row=row))

    def _suggested_finding(self, targets: list[str]) -> Finding | None:
        """The first finding that blames a formula that can be patched."""
        findings = self.diagnosis.findings if self.diagnosis is not None else ()
        return next((f for f in findings if f.function in targets), None)

    def apply_patch(self, target: str, text: str) -> bool:
        """Validate and replay with ``text`` as ``target``; False when it waits for the job in flight."""
        if self.busy:
            if not self.running:
                self._deferred = lambda: self.apply_patch(target, text)
                self._make_way()
            return False
        view, patch = self.view_step, Patch(target, text)
        self._long(f"replaying to step {max(view, 0)} with {target}",
                   lambda p, c: PatchDone(self.debugger.patches.apply(self.debugger, patch, view, p, c)),
                   patch_move="apply", target=target)
        return True

    def action_undo_patch(self) -> None:
        self._patch_move("undo", "undoing a patch", bool(self.debugger.patches.history.applied),
                         "no patch to undo")

    def action_redo_patch(self) -> None:
        self._patch_move("redo", "redoing a patch", bool(self.debugger.patches.history.undone),
                         "no patch to redo")

    def action_reset_patches(self) -> None:
        self._patch_move("reset", "resetting to the original", bool(self.debugger.patches.history.applied),
                         "no patch in force: this is the scenario's original")

    def _patch_move(self, action: str, what: str, possible: bool, otherwise: str) -> None:
        if self._refused_read_only("patching"):
            return
        if not possible:
            self.notify(otherwise)
            return
        if self.busy:
            if not self.running:
                self._deferred = lambda: self._patch_move(action, what, possible, otherwise)
                self._make_way()
            return
        view, session = self.view_step, self.debugger.patches
        move = getattr(session, action)
        self._long(f"{what}: replaying to step {max(view, 0)}", lambda p, c: PatchDone(move(self.debugger, view, p, c)),
                   patch_move=action)

    @on(PatchDone)
    def _patch_done(self, message: PatchDone) -> None:
        outcome = message.outcome
        if outcome.frame is not None:
            self._frame_ready(FrameReady(outcome.frame))
        editor = self.editor
        if editor is not None:
            editor.show_outcome(outcome)
        drafts_error = self.debugger.patches.save_drafts()  # an applied draft is a draft no more
        if drafts_error is not None:
            self.notify(drafts_error, severity="error", timeout=ERROR_NOTICE_S, markup=False)
        if outcome.changed:
            saved = f"\nsaved to {outcome.saved}" if outcome.saved else ""
            self.notify(outcome.message + saved, title="patch", timeout=NOTICE_S, markup=False)
            if outcome.save_error:
                self.notify(outcome.save_error, severity="error", timeout=ERROR_NOTICE_S, markup=False)
        elif editor is None:
            self.notify(outcome.message, severity="information" if outcome.kind == "nothing" else "error",
                        timeout=ERROR_NOTICE_S, markup=False)

    # ---- diagnosis -----------------------------------------------------------------
    def _diagnosis_for(self, frame: Frame) -> None:
        """Once per engine, diagnose its first divergence; drop a diagnosis of an engine replaced since."""
        if self.diagnosis is not None and self.diagnosis.generation != frame.generation:
            self.diagnosis = None
            self._show_diagnosis()
        if frame.first_divergence is not None and self._auto_diagnosed != frame.generation:
            self._auto_diagnosed = frame.generation
            self._want_diagnosis(None, frame.first_divergence[0])

    def diagnose_step(self) -> None:
        """The ``diagnose`` key: the step shown."""
        self._want_diagnosis(self.view_step, self.view_step)

    def _want_diagnosis(self, step: int | None, shown: int) -> None:
        self._diagnosis_wanted, self._again_for = (step,), None
        self._diagnosing = shown
        self._show_diagnosis()
        if not self.busy:
            self._start_diagnosis()

    def _start_diagnosis(self) -> None:
        if self._diagnosis_wanted is None or self.busy:
            return
        if self._again_for not in (None, self.debugger.generation):  # stopped for a patch that replaced the run
            self._diagnosis_wanted = self._diagnosing = self._again_for = None
            self._show_diagnosis()
            return
        wanted, self._diagnosis_wanted = self._diagnosis_wanted, None
        self._diagnosis_running = wanted
        (step,) = wanted
        shown = "the first divergence" if step is None else f"step {step}"
        generation, again = self.debugger.generation, self.key_names("diagnose")
        self._start(lambda: DiagnosisReady(self.debugger.diagnose(step)), slow=f"diagnosing {shown}", kind="other",
                    stopped=lambda stop: DiagnosisReady(Diagnosis(generation, step, (), at_divergence=False,
                                                                  auto=step is None, error="the diagnosis was "
                                                                  f"stopped before it ended ({again} runs it again)"),
                                                        stopped=True))

    def _make_way(self) -> bool:
        """The worker is wanted for a move: a diagnosis in flight stops now, and is wanted again once the worker
        is free. True when one is being stopped (the move then waits only for it to end)."""
        running = self._diagnosis_running
        if running is None or self._leaving:
            return False
        serial = self._job
        if self._stopper.stop():
            self.set_timer(_ABANDON_AFTER, lambda: self._abandon(serial))  # stuck in a C call: left behind
        else:  # not inside its code yet (or committing its result): ask again in a moment
            self.set_timer(0.05, lambda: serial == self._job and self._make_way())
        if self._diagnosis_wanted is None:
            self._diagnosis_wanted, self._diagnosis_again = running, True
            self._again_for = self.debugger.generation
        return True

    @on(DiagnosisReady)
    def _diagnosis_ready(self, message: DiagnosisReady) -> None:
        running, self._diagnosis_running = self._diagnosis_running, None
        again, self._diagnosis_again = self._diagnosis_again, False
        if again and not message.stopped and self._diagnosis_wanted == running:
            self._diagnosis_wanted = None  # it ended before the stop reached it: nothing to run again
        if message.stopped and self._diagnosis_wanted is not None:
            return  # stopped to make way: it runs again once the worker is free, and says so meanwhile
        diagnosis = message.diagnosis
        if self._diagnosis_wanted is None:
            self._diagnosing = None
        if self.frame is None or diagnosis.generation == self.frame.generation:
            self.diagnosis = diagnosis  # (not one of an engine a patch has replaced since)
        self._show_diagnosis()

    def _show_diagnosis(self) -> None:
        self.main.show_diagnosis(self.diagnosis, self._diagnosing, self.key_names("diagnose"))

    def show_evidence(self, step: int | None, tensor: str | None) -> None:
        """Go to a finding's step with its tensor selected."""
        if step is None:
            self.notify("this finding names no step", severity="warning")
            return
        if self.busy:
            if not self.running:
                self._deferred = lambda: self.show_evidence(step, tensor)
                self._make_way()
            return
        view = self.view_step
        self._start(lambda: self.debugger.show_tensor(step, tensor, view), slow=f"going to step {step}")

    def action_help(self) -> None:
        sections = [
            ("Stepping and running", ENGINE_BINDINGS),
            ("Patching (each move replays from step 0)", PATCH_BINDINGS),
            ("In the patch editor", EDITOR_BINDINGS),
            ("Diagnosis", [*DIAGNOSIS_BINDINGS, *FindingList.BINDINGS]),
            ("Workshops", SHOW_BINDINGS),
            ("Looking", VIEW_BINDINGS),
            ("Moving in the tensor", list(TensorGrid.BINDINGS)),
        ]
        self.push_screen(HelpScreen(sections, self.user_keymap))

    def action_save_screenshot(self) -> None:
        """The screen as an SVG file named for the scenario and step; in a browser, a download."""
        frame = self.frame
        if frame is None:
            self.notify("nothing on screen yet", title="screenshot", severity="warning")
            return
        target = screenshot_path(frame.scenario, frame.variant, frame.step)
        self.clear_notifications()  # a toast left on screen would be in the picture
        self.call_after_refresh(self._save_screenshot, target)

    def _save_screenshot(self, target: Path) -> None:
        if self.is_web:  # the server's directory is no use to the person at the browser
            self.deliver_screenshot(target.name)
            self.notify(f"screenshot {target.name} sent to the browser", title="screenshot", markup=False)
            return
        try:
            saved = self.save_screenshot(target.name, str(target.parent))
        except OSError as error:
            self.notify(f"screenshot not saved: {error.strerror or error} ({target.parent})", title="screenshot",
                        severity="error", timeout=ERROR_NOTICE_S, markup=False)  # a path may hold [brackets]
            return
        self.notify(f"saved to {saved}", title="screenshot", timeout=NOTICE_S, markup=False)

    # ---- sessions: save one to share; a saved one opens read-only -------------------
    @property
    def recorded_from(self) -> str | None:
        """The file of a saved session opened read-only, None for a live run."""
        engine = self.debugger.engine
        return str(engine.path) if getattr(engine, "read_only", False) else None

    def _refused_read_only(self, what: str) -> bool:
        """In a saved session, say that ``what`` would run the scenario's code; True when refused."""
        if self.recorded_from is None:
            return False
        self.notify(f"{what} is unavailable: read-only recorded session {self.recorded_from} "
                    "(a saved session's code is never run)", severity="warning", timeout=ERROR_NOTICE_S, markup=False)
        return True

    def action_save_session(self) -> None:
        """Save the session on the engine worker (it reads the engine), to the default path."""
        if self.recorded_from is not None:
            self.notify(f"this is a saved session already: {self.recorded_from}", title="session", markup=False)
            return
        if self.busy:
            if not self.running:
                self._deferred = self.action_save_session
                self._make_way()
            return
        from gradstep.session_file import default_session_path

        engine, view = self.debugger.engine, self.view_step
        target = default_session_path(engine.scenario, engine.next_step)
        self._start(lambda: _save_session(engine, target, view), slow="saving the session", kind="other",
                    stopped=lambda stop: SessionSaved(str(target), "stopped: nothing saved"))

    @on(SessionSaved)
    def _session_saved(self, message: SessionSaved) -> None:
        if message.error is not None:
            self.notify(message.error, title="session not saved", severity="error", timeout=ERROR_NOTICE_S,
                        markup=False)
            return
        left_out = f"\n{len(message.notes)} value(s) left out (not saveable without pickle)" if message.notes else ""
        self.notify(f"saved to {message.path}\nopen it with: gradstep open {message.path}{left_out}",
                    title="session", timeout=ERROR_NOTICE_S, markup=False)

    async def action_quit(self) -> None:
        self._leave(0)

    def _signalled(self, signum: int) -> None:
        """SIGTERM or SIGHUP: the same orderly exit as quitting (the terminal put back), exit 128 + the signal."""
        self._leave(128 + signum)

    def _leave(self, code: int) -> None:
        """Keep the editor's text, stop any job inside the user's code, exit; a job that will not stop cannot
        keep the process alive: a moment later it ends, the terminal put back (``terminal.arm_hard_exit``)."""
        self._leaving = True
        self._cancel.set()
        self._keep_drafts()
        stopping = self._stopper.stop()
        if not self.is_headless and (stopping or self._abandoned or code):  # a thread that may never end
            arm_hard_exit(self._terminal, code, before=self._keep_drafts)
        self.exit(return_code=code)

    def _keep_drafts(self) -> None:
        editor = self.editor
        if editor is not None:
            editor.keep_draft()
        else:
            self.debugger.patches.save_drafts()

    def on_unmount(self) -> None:
        """Quitting: a run in flight stops, and the GPU memory torch has cached but no longer uses goes back.

        The engine itself stays with its owner (the CLI drops it, then releases again), so a caller can
        still read ``app.debugger`` after ``run()``.
        """
        self._cancel.set()
        self._stopper.stop()
        gc.unfreeze()  # the first frame froze everything alive then, the engine included, out of collection
        release_device_memory()


def _save_session(engine: Engine, target: Path, view: int) -> SessionSaved:
    """On the engine worker: the session with the step shown in full, or why it could not be written."""
    from gradstep.session_file import SessionFileError, save

    try:
        saved = save(engine, target, steps=(view,))
    except SessionFileError as error:
        return SessionSaved(str(target), str(error))
    return SessionSaved(str(saved.path), notes=saved.notes)


def create_app(engine: Engine, *, hex_bits: bool = False, keymap: dict[str, str] | None = None,
               keymap_file: Path | None = None, user_keymap: bool = False, present: bool = False) -> GradstepApp:
    """The app for ``engine``: the CLI passes ``user_keymap=True`` to read the user's keymap file."""
    keys = dict(load_keymap(keymap_file) if (user_keymap or keymap_file) else {})
    keys.update(keymap or {})
    return GradstepApp(engine, hex_bits=hex_bits, keymap=keys, present=present)


def _first_gradient(targets: list[str]) -> str:
    """Where the editor opens when nothing suggests a formula: the NumPy gradient, else the NumPy step."""
    return next((t for t in ("numpy.backward", "numpy.step") if t in targets), targets[0])
