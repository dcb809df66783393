"""The debugger's moves, in terms of the engine: what a key press asks for, on the worker thread.

Nothing here touches Textual; every method runs on a worker thread and
returns a :class:`~gradstep.tui.frame.Frame` for the UI to show. Viewing a
step already run reads the engine's trace (``engine.record``, which recomputes
old steps from checkpoints): it never moves the engine's frontier. Moving
past the frontier steps the engine. A failure of the scenario's code comes
back as the frame of the last good view with ``error`` set.

A recorded session (``engine.read_only``) never runs code: moving past its
last step says so, and a diagnosis is the one saved with it, at the first
divergence.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from gradstep.diagnosis import diagnose
from gradstep.engine import Engine
from gradstep.sides import ScenarioError
from gradstep.stoppable import Stopped
from gradstep.tui.findings import Diagnosis
from gradstep.tui.frame import INITIAL, ErrorInfo, Frame, PhaseMap, build_frame
from gradstep.tui.patching import PatchSession

Progress = Callable[[int, int], None]
Cancelled = Callable[[], bool]


class Debugger:
    """One engine and the moves the app makes on it; a patch replay swaps in a new engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.phases = PhaseMap()
        self.patches = PatchSession(engine)
        self.generation = 0
        self.replayed = False
        self.divergence_before: tuple[int, str] | None = None
        # A step stopped half-way inside the scenario's code (it did not return): the run cannot go on.
        self.halted: ErrorInfo | None = None

    @property
    def last_step(self) -> int:
        """The newest step run, INITIAL when none."""
        return self.engine.next_step - 1

    @property
    def read_only(self) -> bool:
        """A saved session: nothing can run."""
        return getattr(self.engine, "read_only", False)

    def _end_of_recording(self, until: str | None = None) -> Frame:
        """Past a saved session's last step: its last step, and why it goes no further."""
        looked = {"divergence": "no divergence", "nonfinite": "no NaN/Inf"}.get(until or "")
        found = f"{looked} in the {self.engine.next_step} recorded steps; " if looked else ""
        end = f"ends at step {self.last_step}" if self.last_step >= 0 else "holds the initial weights only"
        return self.show(self.last_step).with_(
            notice=f"{found}read-only: the recorded session {end}; running further would run the scenario's "
                   "code, which a saved session never does")

    def show(self, step: int) -> Frame:
        frame = build_frame(self.engine, max(INITIAL, min(step, self.last_step)), self.phases)
        return frame.with_(patches=tuple(self.patches.in_force()), replayed=self.replayed,
                           divergence_before=self.divergence_before, generation=self.generation)

    def replace(self, engine: Engine, divergence_before: tuple[int, str] | None) -> None:
        """Swap in ``engine`` (a patch replay's), remembering where the run diverged before it."""
        self.engine = engine
        self.phases = PhaseMap()
        self.generation += 1
        self.replayed = True
        self.divergence_before = divergence_before
        self.halted = None  # a replay is a run of its own, from step 0

    def halt(self, view: int, stop: Stopped) -> Frame:
        """A move stopped inside the scenario's code: say where; the engine is left half-way through a step."""
        where = stop.where if isinstance(stop.where, ScenarioError) else None
        self.halted = ErrorInfo(self.engine.next_step, where.side if where else "?",
                                where.function if where else "code", where.location if where else "?",
                                "it did not return: stopped there. The run cannot go on from a step stopped "
                                "half-way: step back to look, or patch the formula (a patch replays from step 0)")
        return self.show(min(view, self.last_step)).with_(error=self.halted)

    def show_tensor(self, step: int, key: str | None, view: int) -> Frame:
        """Go to ``step`` (running up to it if needed) with tensor ``key`` selected: a finding's evidence."""
        frame = self.goto(step, view)
        if key is not None and frame.entry(key) is None:
            return frame.with_(notice=f"{key} is not a tensor of step {frame.step}")
        return frame.with_(focus_key=key)

    def diagnose(self, step: int | None) -> Diagnosis:
        """The ranked findings at ``step`` (None: at the first divergence)."""
        first = self.engine.first_divergence
        at = step if step is not None else (first.step if first is not None else None)
        if self.read_only:
            return self._recorded_diagnosis(at, first.step if first is not None else None, step is None)
        if at is None or at < 0:
            why = "no divergence so far: nothing to diagnose" if at is None else \
                "the initial weights: nothing has run yet to diagnose (step first)"
            return Diagnosis(self.generation, at, (), at_divergence=False, auto=step is None, error=why)
        try:
            with _thread_state_kept():
                findings = tuple(diagnose(self.engine, at))
        except Exception as error:  # a diagnosis is advice: its failure must not stop the debugger
            return Diagnosis(self.generation, at, (), at_divergence=False, auto=step is None,
                             error=f"the diagnosis failed: {type(error).__name__}: {error}")
        at_divergence = first is not None and first.step == at
        return Diagnosis(self.generation, at, findings, at_divergence=at_divergence, auto=step is None)

    def _recorded_diagnosis(self, at: int | None, first: int | None, auto: bool) -> Diagnosis:
        """A saved session's diagnosis: the one made at its first divergence when it was saved."""
        if first is not None and at == first:
            findings, error = self.engine.recorded_diagnosis()
            return Diagnosis(self.generation, at, tuple(findings), at_divergence=True, auto=auto, error=error)
        why = ("no divergence in the recorded session: nothing to diagnose" if first is None else
               f"read-only: a diagnosis re-runs the scenario's code, which a saved session never does; "
               f"the file holds the diagnosis of the first divergence, step {first}")
        return Diagnosis(self.generation, at, (), at_divergence=False, auto=auto, error=why)

    def forward(self, view: int) -> Frame:
        """One step on from ``view``: an old step from the trace, or a new one at the frontier."""
        if view + 1 <= self.last_step:
            return self.show(view + 1)
        if self.read_only:
            return self._end_of_recording()
        if self.halted is not None:
            return self.show(view).with_(error=self.halted)
        if self.engine.next_step >= self.engine.total_steps:
            return self.show(view).with_(notice=f"the run is over: all {self.engine.total_steps} steps are done")
        try:
            self.engine.step()
        except ScenarioError as error:
            return self.show(view).with_(error=ErrorInfo.of(error))
        return self.show(self.last_step)

    def back(self, view: int) -> Frame:
        if view <= INITIAL:
            return self.show(INITIAL).with_(notice="already at the start: the initial weights")
        return self.show(view - 1)

    def goto(self, target: int, view: int, progress: Progress | None = None,
             cancelled: Cancelled | None = None) -> Frame:
        """Show ``target``, running the steps up to it first if it is past the frontier."""
        target = max(INITIAL, min(target, self.engine.total_steps - 1))
        if target <= self.last_step:
            return self.show(target)
        if self.read_only:
            return self._end_of_recording()
        return self._run(target - self.last_step, None, view, progress, cancelled, target=target)

    def run(self, steps: int | None, until: str | None, view: int, progress: Progress | None = None,
            cancelled: Cancelled | None = None) -> Frame:
        """Run ``steps`` more (None: to the end), or until the first divergence / NaN-Inf."""
        if until == "divergence" and self.engine.first_divergence is not None:
            d = self.engine.first_divergence
            return self.show(d.step).with_(focus_key=d.tensor, notice=f"first divergence: step {d.step}, {d.tensor}")
        if until == "nonfinite" and self.engine.first_nonfinite is not None:
            return self._at_nonfinite(self.engine.first_nonfinite)
        return self._run(steps, until, view, progress, cancelled)

    def _run(self, steps: int | None, until: str | None, view: int, progress: Progress | None,
             cancelled: Cancelled | None, target: int | None = None) -> Frame:
        if self.read_only:
            return self._end_of_recording(until)
        if self.halted is not None:
            return self.show(view).with_(error=self.halted)
        if self.engine.next_step >= self.engine.total_steps:
            return self.show(view).with_(notice=f"the run is over: all {self.engine.total_steps} steps are done")
        result = self.engine.run(steps=steps, until=until, progress=progress, cancelled=cancelled)
        if result.error is not None:
            return self.show(self.last_step).with_(error=ErrorInfo.of(result.error))
        if result.stopped == "divergence" and result.first_divergence is not None:
            d = result.first_divergence
            return self.show(d.step).with_(focus_key=d.tensor, notice=f"first divergence: step {d.step}, {d.tensor}")
        if result.stopped == "nonfinite" and result.first_nonfinite is not None:
            return self._at_nonfinite(result.first_nonfinite)
        shown = self.last_step if target is None else min(target, self.last_step)
        notice = {
            "cancelled": f"stopped at step {self.last_step}",
            "end": f"ran to the end: {result.steps} steps"
            + ("" if until is None else f"; no {'divergence' if until == 'divergence' else 'NaN/Inf'}"),
        }.get(result.stopped, "")
        return self.show(shown).with_(notice=notice)

    def _at_nonfinite(self, step: int) -> Frame:
        frame = self.show(step)
        key = next((e.key for e in frame.entries if e.status.name == "NONFINITE"), None)
        return frame.with_(focus_key=key, notice=f"first NaN/Inf: step {step}" + (f", {key}" if key else ""))


@contextlib.contextmanager
def _thread_state_kept() -> Iterator[None]:
    """The worker thread's trace function and torch's thread count as they were, however the block ends.

    The diagnosis changes both for a moment (its line recorder traces the scenario's code, its replicas run
    on one torch thread) and puts them back; a stop raised in it (escape, or a step that needs the worker)
    can land before it does, and the thread, which runs the next jobs too, would go on traced.
    """
    import torch

    trace, threads = sys.gettrace(), torch.get_num_threads()
    try:
        yield
    finally:
        sys.settrace(trace)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
