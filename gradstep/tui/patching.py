"""Patching from the debugger: drafts, the history, and apply / undo / redo / reset, each a replay.

Nothing here touches Textual. :meth:`PatchSession.apply` and the history moves
run on the engine worker (validating and replaying use the engine); the UI
thread only reads the drafts and the sources, which come from the scenario,
never from the engine. A move either commits everything (the new engine, the
history, the saved file; a file that cannot be written is reported) or
nothing: a patch that is refused, a replay that fails in the scenario's code
or is cancelled leave the previous engine, the history and the file as they
were.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gradstep import patch as patching
from gradstep.patch import Patch, PatchError, PatchSet
from gradstep.patch_store import PatchStore
from gradstep.safe_text import printable
from gradstep.sides import ScenarioError
from gradstep.stoppable import Stopped, TimedOut, error_words, shielded, time_limit
from gradstep.tui.frame import INITIAL, ErrorInfo, Frame

if TYPE_CHECKING:
    from gradstep.engine import Engine
    from gradstep.tui.session import Debugger

Progress = Callable[[int, int], None]
Cancelled = Callable[[], bool]
VALIDATION_SECONDS = 15.0  # checking a patch on one step's inputs: past this it is taken not to return


@dataclass(frozen=True)
class PatchOutcome:
    """What an apply, undo, redo or reset did.

    ``kind``: ``"applied"`` (replayed, swapped in, saved), ``"refused"`` (the
    patch did not validate: ``line`` is its line when known), ``"failed"`` (the
    replay raised in the scenario's code), ``"cancelled"`` (between two steps),
    ``"stopped"`` (inside code that did not return: ``line`` is the patch's
    line it was stopped at, when it was in the patch), or ``"nothing"`` (no
    patch to undo, redo or reset). Only ``"applied"`` changed anything.
    """

    kind: str
    action: str  # "apply", "undo", "redo", "reset"
    target: str | None
    message: str
    line: int | None = None
    frame: Frame | None = None
    saved: Path | None = None
    save_error: str | None = None

    @property
    def changed(self) -> bool:
        return self.kind == "applied"


class PatchSession:
    """The scenario as loaded, the patches applied to it (with undo/redo), and unapplied drafts per target."""

    def __init__(self, engine: Engine) -> None:
        self.base = getattr(engine, "base_scenario", None) or engine.scenario
        # `gradstep SCENARIO --patch FILE`: the engine was built with these compiled in.
        self.history = PatchSet(applied=list(getattr(engine, "patches", None) or []))
        # Patches came from the user's file: later ones go back to it, so `--patch FILE` keeps working.
        given = getattr(engine, "patch_file", None)
        self._file = Path(given) if given else None
        self.drafts: dict[str, str] = {}
        self.saved: Path | None = None
        self.last_target: str | None = None
        # A saved session runs nothing and saves no patches: it reads no patch file either.
        self.store = None if getattr(engine, "read_only", False) else PatchStore(self.base, self.patch_file(),
                                                                                  given=bool(given))
        if self.store is not None:
            # The drafts typed in an earlier session, else the patches it had in force, offered to apply again.
            offered = {p.target: p.source for p in self.store.offered}
            self.drafts = {t: s for t, s in {**offered, **self.store.drafts}.items()
                           if s.strip() != self.applied_source(t).strip()}

    # ---- read on the UI thread -----------------------------------------------------
    @property
    def targets(self) -> list[str]:
        """The scenario's patchable functions: a side's step function, or its pieces."""
        return patching.targets_for(self.base)

    def in_force(self) -> dict[str, Patch]:
        return self.history.in_force()

    def source(self, target: str) -> str:
        """What the editor holds for ``target``: the draft, else the patch in force, else the original."""
        return self.drafts.get(target) or self.applied_source(target)

    def applied_source(self, target: str) -> str:
        return patching.source_of(self.base, target, self.history)

    def keep_draft(self, target: str, text: str) -> None:
        """Keep ``text`` for ``target`` unless it is what is in force already."""
        if text.strip() == self.applied_source(target).strip():
            self.drafts.pop(target, None)
        else:
            self.drafts[target] = text
        self.last_target = target

    def patch_file(self) -> Path:
        """Where applied patches are saved: the ``--patch`` file, else the documented default."""
        return self._file or patching.default_patch_file(self.base)

    def start_notes(self, edit_key: str, apply_key: str) -> list[str]:
        """What opening the debugger has to say about saved patches and drafts."""
        if self.store is None:
            return []
        offer = self.store.offer_text(edit_key, apply_key)
        drafts = [t for t in self.store.drafts if t in self.drafts]
        typed = (f"Text typed but not applied in an earlier session is back in the patch editor (✎): "
                 f"{', '.join(drafts)} (kept in {self.store.drafts_path})") if drafts else ""
        return [note for note in (offer, typed, *self.store.notes) if note]

    def save_drafts(self) -> str | None:
        """Keep the drafts on disk (as they are typed: the editor calls this debounced); an error's text, or None."""
        if self.store is None:
            return None
        try:
            self.store.save_drafts(self.drafts)
        except OSError as error:
            return f"could not keep the drafts in {self.store.drafts_path}: {error.strerror or error}"
        return None

    # ---- on the engine worker ------------------------------------------------------
    def apply(self, debugger: Debugger, patch: Patch, view: int, progress: Progress | None = None,
              cancelled: Cancelled | None = None) -> PatchOutcome:
        """Validate ``patch`` on the step shown, then replay from step 0 to it with the patch in force."""
        try:
            with time_limit(VALIDATION_SECONDS):
                patching.validate(debugger.engine, patch, max(view, 0))
        except PatchError as error:
            return PatchOutcome("refused", "apply", patch.target, str(error), line=error.line)
        except TimedOut as stop:
            return PatchOutcome("refused", "apply", patch.target,
                                f"the patch did not return within {VALIDATION_SECONDS:g} s on the inputs of the step "
                                "shown: stopped there (does it loop forever?)", line=patching.patch_line(stop))
        except Stopped as stop:
            return _stopped("apply", patch.target, stop, "while it was checked on the step's inputs")
        except (Exception, SystemExit) as error:  # the original function or the probe itself failed: still refuse
            return PatchOutcome("refused", "apply", patch.target, printable(error_words(error)))
        trial = _copy(self.history)
        trial.apply(patch)
        return self._replay(debugger, trial, view, "apply", patch.target, progress, cancelled)

    def undo(self, debugger: Debugger, view: int, progress: Progress | None = None,
             cancelled: Cancelled | None = None) -> PatchOutcome:
        trial = _copy(self.history)
        undone = trial.undo()
        if undone is None:
            return PatchOutcome("nothing", "undo", None, "no patch to undo")
        return self._replay(debugger, trial, view, "undo", undone.target, progress, cancelled)

    def redo(self, debugger: Debugger, view: int, progress: Progress | None = None,
             cancelled: Cancelled | None = None) -> PatchOutcome:
        trial = _copy(self.history)
        redone = trial.redo()
        if redone is None:
            return PatchOutcome("nothing", "redo", None, "no patch to redo")
        return self._replay(debugger, trial, view, "redo", redone.target, progress, cancelled)

    def reset(self, debugger: Debugger, view: int, progress: Progress | None = None,
              cancelled: Cancelled | None = None) -> PatchOutcome:
        if not self.history.applied:
            return PatchOutcome("nothing", "reset", None, "no patch in force: this is the scenario's original")
        trial = _copy(self.history)
        trial.reset()
        return self._replay(debugger, trial, view, "reset", None, progress, cancelled)

    def _replay(self, debugger: Debugger, trial: PatchSet, view: int, action: str, target: str | None,
                progress: Progress | None, cancelled: Cancelled | None) -> PatchOutcome:
        """Replay with ``trial``'s patches to the step shown; commit only if it ran to the end."""
        old = debugger.engine
        steps = 0 if view <= INITIAL else view + 1
        patches = list(trial.in_force().values())
        try:
            fresh = patching.replay(old, self.base, patches, steps, progress, cancelled)
        except PatchError as error:
            return PatchOutcome("refused", action, target, str(error), line=error.line)
        except ScenarioError as error:
            return PatchOutcome("failed", action, target, _failure(ErrorInfo.of(error)))
        except Stopped as stop:
            return _stopped(action, target, stop, "during the replay")
        if fresh is None:
            return PatchOutcome("cancelled", action, target, "replay cancelled")
        if fresh.last_error is not None:
            return PatchOutcome("failed", action, target, _failure(ErrorInfo.of(fresh.last_error)))
        with shielded():  # from here on, all or nothing: a stop asked now comes too late to matter
            return self._commit(debugger, fresh, trial, patches, view, action, target)

    def _commit(self, debugger: Debugger, fresh: Engine, trial: PatchSet, patches: list[Patch], view: int,
                action: str, target: str | None) -> PatchOutcome:
        old = debugger.engine
        fresh.base_scenario, fresh.patches = self.base, patches
        before = old.first_divergence
        self.history = trial
        if action == "apply" and target is not None:
            self.drafts.pop(target, None)  # applied: the editor now opens on the patch in force
        saved, save_error = self._save()
        debugger.replace(fresh, None if before is None else (before.step, before.tensor))
        frame = debugger.show(view)
        return PatchOutcome("applied", action, target, _done(action, target, frame), frame=frame, saved=saved,
                            save_error=save_error)

    def _save(self) -> tuple[Path | None, str | None]:
        """Save the patches in force as they are applied, and every other one kept: quitting or a crash loses
        nothing, and neither does an undo or a later session."""
        if self.store is None:
            return None, None
        try:
            self.saved = self.store.save(self.history)
            return self.saved, None
        except OSError as error:
            return None, f"could not save the patches to {self.patch_file()}: {error.strerror or error}"


def _copy(history: PatchSet) -> PatchSet:
    return PatchSet(list(history.applied), list(history.undone))


def _stopped(action: str, target: str | None, stop: Stopped, when: str) -> PatchOutcome:
    """Escape or quit stopped code that did not return: where it was, and that nothing changed."""
    where = stop.where
    what = f"the {where.side} side's {where.function}" if isinstance(where, ScenarioError) else "the patch"
    at = f" ({where.location})" if isinstance(where, ScenarioError) and where.location else ""
    return PatchOutcome("stopped", action, target,
                        printable(f"stopped {when}: {what}{at} did not return — nothing changed, the previous run "
                                  "and its patches stay"), line=patching.patch_line(stop))


def _failure(error: ErrorInfo) -> str:
    at = "" if error.step is None else f" at step {error.step}"
    return (f"the replay failed{at} in the {error.side} side's {error.function} ({error.location}): "
            f"{error.message} — nothing changed")


def divergence_text(divergence: tuple[int, str] | None) -> str:
    return "none" if divergence is None else f"step {divergence[0]} {divergence[1]}"


def change_text(before: tuple[int, str] | None, after: tuple[int, str] | None) -> str:
    """``first divergence: step 0 grad w → none``."""
    return f"first divergence: {divergence_text(before)} → {divergence_text(after)}"


def _done(action: str, target: str | None, frame: Frame) -> str:
    what = {
        "apply": f"patched {target}",
        "undo": f"undid the patch of {target}",
        "redo": f"redid the patch of {target}",
        "reset": "back to the scenario's original",
    }[action]
    replayed = "at the start" if frame.step == INITIAL else f"to step {frame.step}"
    return f"{what}, replayed {replayed}; {change_text(frame.divergence_before, frame.first_divergence)}"
