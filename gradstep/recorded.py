"""A saved session, read-only, as the app and the report read an engine.

:class:`RecordedRun` answers what :class:`~gradstep.engine.Engine` answers
about a run already made (its trace, the full tensors of the window's steps,
the first divergence, drift, the end state, the diagnosis made when it was
saved) from a :class:`~gradstep.session_file.SavedSession`. It never runs the
scenario's code: a session file may come from someone else, and its scenario
source is only text to read. So it cannot step, run, recompute a step outside
the window or replay a patch; :class:`StepNotRecorded` and
:class:`ReadOnlyError` say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradstep import keys
from gradstep.compare import Status, TensorComparison
from gradstep.engine import Drift, RunResult, compare_record
from gradstep.session_file import SavedSession, ScenarioInfo, load
from gradstep.trace import Checkpoint, EpochMetrics, StepRecord

_PHASE_RANK = {p: i for i, p in enumerate(keys.PHASES)}


class ReadOnlyError(Exception):
    """A move that would run the scenario's code, asked of a recorded session."""


class StepNotRecorded(LookupError):
    """A step whose full tensors the session file does not hold (only its summary)."""

    def __init__(self, step: int, message: str) -> None:
        self.step = step
        super().__init__(message)


@dataclass
class RecordedTrace:
    """The saved trace: per-step summaries, the window of full tensors, the checkpoints. Read-only."""

    keys: list[str]
    max_abs: np.ndarray
    max_rel: np.ndarray
    n_bad: np.ndarray
    status: np.ndarray
    losses: np.ndarray
    metrics: list[EpochMetrics]
    checkpoints: dict[int, Checkpoint]
    interval: int
    _window: Any = field(repr=False, default=None)

    @property
    def steps(self) -> int:
        return len(self.losses)

    def step_status(self, step: int) -> dict[str, Status | None]:
        row = self.status[step]
        return {k: (Status(int(s)) if s >= 0 else None) for k, s in zip(self.keys, row, strict=False)}

    def window_steps(self) -> list[int]:
        return self._window.window_steps()

    def recent(self, step: int) -> StepRecord | None:
        return self._window.record(step)


class RecordedError(Exception):
    """The scenario error a saved run stopped on, as the file tells it."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.side, self.function = fields["side"], fields["function"]
        self.location, self.step = fields["location"], fields.get("step")
        self.error = _named_error(fields["type"], fields["message"])
        super().__init__(fields["text"])


def _named_error(name: str, message: str) -> Exception:
    """An exception that prints as the original did (its class name), built from text only."""
    safe = name if name.isidentifier() and len(name) <= 80 else "Error"
    return type(safe, (Exception,), {})(message)


class RecordedRun:
    """A saved run, read-only, with the engine's reading side (see the module docstring)."""

    read_only = True

    def __init__(self, session: SavedSession) -> None:
        self.session = session
        self.path = session.path
        self.scenario: ScenarioInfo = session.scenario
        self.base_scenario = session.scenario
        self.patches = list(session.patches)
        self.options = dict(session.options)
        run = session.run
        self.device, self.dtype_name, self.tf32 = run["device"], run["dtype"], run["tf32"]
        self.rtol, self.atol = run["rtol"], run["atol"]
        self.steps_per_epoch, self.total_steps = run["steps_per_epoch"], run["total_steps"]
        self.next_step = run["next_step"]
        s = session.summaries
        self.trace = RecordedTrace(list(s["keys"]), s["max_abs"], s["max_rel"], s["n_bad"], s["status"],
                                   s["losses"], list(session.metrics), dict(session.checkpoints),
                                   session.interval, session.window)
        result = session.result
        self.first_divergence = result["first_divergence"]
        self.first_nonfinite = result["first_nonfinite"]
        self._drift: Drift | None = result["drift"]
        self._stopped: str = result["stopped"]
        self.last_error = None if result["error"] is None else RecordedError(result["error"])
        self.unmapped_torch = list(session.unmapped_torch)
        self.rounding_reasons = dict(session.rounding_reasons)
        self.rounding_summary = session.rounding_summary

    @classmethod
    def open(cls, path: str | Path) -> RecordedRun:
        """Load and check a session file (:class:`~gradstep.session_file.SessionFileError` if it is bad)."""
        return cls(load(path))

    # ---- the run -------------------------------------------------------------------
    def result(self, stopped: str | None = None, error: Any = None) -> RunResult:
        error = error if error is not None else self.last_error
        return RunResult(steps=self.next_step, parity=self.first_divergence is None and error is None,
                         first_divergence=self.first_divergence, first_nonfinite=self.first_nonfinite,
                         drift=self._drift, stopped=stopped or self._stopped, error=error)

    def drift(self) -> Drift | None:
        return self._drift

    def step(self) -> StepRecord:
        raise ReadOnlyError(self._cannot("run a step"))

    def run(self, *args: Any, **kwargs: Any) -> RunResult:
        raise ReadOnlyError(self._cannot("run steps"))

    def _cannot(self, what: str) -> str:
        return (f"read-only: recorded session {self.path} cannot {what}; "
                "gradstep never runs the code of a saved session")

    # ---- steps ----------------------------------------------------------------------
    def record(self, step: int) -> StepRecord:
        """The full tensors of ``step`` if the window holds it; StepNotRecorded for another step run."""
        if not 0 <= step < self.next_step:
            raise IndexError(f"step {step} has not been run (steps run: {self.next_step})")
        record = self.trace.recent(step)
        if record is None:
            raise StepNotRecorded(step, f"step {step}: only its summary was saved; {self.recorded_steps()}")
        return record

    def recorded_steps(self) -> str:
        """``full tensors saved for steps 90-99`` (or the steps, when they are not one range)."""
        steps = self.trace.window_steps()
        if not steps:
            return "no step's full tensors were saved"
        if steps == list(range(steps[0], steps[-1] + 1)):
            span = str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]}"
        else:
            span = ", ".join(map(str, steps[:6])) + (", …" if len(steps) > 6 else "")
        return f"full tensors saved for step{'s' if len(steps) > 1 else ''} {span}"

    def compare(self, step: int, local: bool = False) -> list[TensorComparison]:
        """Full comparison of every tensor of a recorded step (free-running, or local when measured)."""
        return compare_record(self.record(step), local, self.rtol, self.atol)

    def initial_weights(self) -> dict[str, dict[str, np.ndarray]]:
        weights = self.session.initial_weights
        if weights is None:
            raise StepNotRecorded(-1, "the initial weights were not saved in this session")
        return weights

    def final_state(self) -> dict[str, dict[str, Any]]:
        return self.session.final_state

    # ---- facts -----------------------------------------------------------------------
    def phase_of(self, key: str) -> str:
        return self.session.phases.get(key) or keys.phase_of(key, set(), set())

    def compute_order(self, record: StepRecord) -> list[str]:
        """As the engine orders them: by phase, the trace's columns first, then NumPy's order, torch-only last."""
        present = dict.fromkeys([*record.numpy, *record.torch])
        names = list(dict.fromkeys([*(k for k in self.trace.keys if k in present), *present]))
        return sorted(names, key=lambda k: _PHASE_RANK[self.phase_of(k)])

    def position(self, step: int) -> tuple[int, int]:
        return divmod(step, self.steps_per_epoch)

    def recorded_diagnosis(self) -> tuple[list[Any], str | None]:
        """The findings at the first divergence as saved, or why there are none."""
        saved = self.session.diagnosis
        if saved is None:
            return [], None
        return list(saved["findings"]), saved["error"]

    def describe(self) -> str:
        """One line on where the file came from: ``saved 2025-… by gradstep 0.1.0 (NumPy …, torch …, Python …)``."""
        v = self.session.versions
        made = ", ".join(f"{name} {v[key]}" for key, name in (("numpy", "NumPy"), ("torch", "torch"),
                                                              ("python", "Python")) if key in v)
        return (f"recorded session {self.path}: saved {self.session.created or '(no date)'} by gradstep "
                f"{v.get('gradstep', '?')}" + (f" ({made})" if made else ""))

