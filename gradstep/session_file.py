"""Sessions you can share: an engine's run saved to one file, and loaded back without pickle.

The file (``.gradstep`` by convention; its content decides) is a zip holding
NumPy ``.npy`` arrays written with ``allow_pickle=False`` and a manifest,
``session.json``, with ``format`` ``"gradstep-session"`` and an integer
``format_version``. The manifest's ``session`` is one tree
(:mod:`gradstep.session_tree`): the per-step summaries, the window of full
tensors (:mod:`gradstep.session_window`), the checkpoints, the patches in
force, the scenario's name, variant and source text, the engine's options, the
first divergence, drift and first NaN/Inf, the diagnosis of the first
divergence, and the versions of gradstep, NumPy, torch and Python.

Loading trusts nothing in the file (:mod:`gradstep.session_zip` checks the
container): anything wrong is one :class:`SessionFileError` naming the file
and the problem, raised before anything else happens. Nothing in a session
file is ever run: the scenario's source is text to read.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradstep import __version__, keys
from gradstep.compare import STATUS_FROM_FORMAT_1, Status, TensorComparison, Tolerance
from gradstep.diagnosis import Finding
from gradstep.engine import TORCH_DTYPES, Divergence, Drift, RunResult
from gradstep.patch import TARGETS, Patch
from gradstep.referee import Judgement
from gradstep.safe_text import shown
from gradstep.session_tree import Decoder, Encoder, TreeError
from gradstep.session_window import RecordedWindow, WindowError, pack_window
from gradstep.session_zip import SUFFIX, ArchiveError, ArchiveReader, ArchiveWriter, looks_like_session
from gradstep.trace import Checkpoint, EpochMetrics

FORMAT = "gradstep-session"
FORMAT_VERSION = 2  # 2: the ROUNDING status (format 1's statuses are renumbered on load)
MAX_SOURCE_BYTES = 1 << 20
STOPPED = ("end", "steps", "divergence", "nonfinite", "cancelled", "error")
# The only types a session file may hold besides plain values, arrays and tensors.
TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    Status, Tolerance, TensorComparison, Divergence, Drift, EpochMetrics, Checkpoint, Finding, Patch, Judgement)}


class SessionFileError(Exception):
    """A session that cannot be saved or loaded: names the file and what is wrong."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class _Invalid(ValueError):
    """Content that decodes but does not hold together."""


@dataclass(frozen=True)
class Saved:
    path: Path
    size: int
    notes: tuple[str, ...]  # what could not be saved (an object in a user's state dict)


# ---- saving ----------------------------------------------------------------------


def default_session_path(scenario: Any, steps: int) -> Path:
    """Where the app's save key writes: ``$XDG_STATE_HOME/gradstep/sessions/SCENARIO-VARIANT-Nsteps.gradstep``."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{scenario.name}-{scenario.variant}")
    return base / "gradstep" / "sessions" / f"{safe}-{steps}steps{SUFFIX}"


def save(engine: Any, path: str | Path, result: RunResult | None = None, steps: tuple[int, ...] = ()) -> Saved:
    """Write ``engine``'s session to ``path`` (atomically); ``result`` is the run's, else the engine's now.

    The full tensors saved are the trace's window, the first divergence's and first NaN/Inf's steps, and
    ``steps`` (the step the app shows): older steps are recomputed from checkpoints for it.
    """
    path = Path(path)
    if result is None:
        stopped = "end" if engine.next_step >= engine.total_steps else "steps"
        result = engine.result(stopped, getattr(engine, "last_error", None))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = ArchiveWriter(path)
    except OSError as error:
        raise SessionFileError(path, f"cannot write it: {error.strerror or error}") from error
    try:
        notes: list[str] = []
        encoder = Encoder(writer.put, TYPES)
        body = encoder.encode(_body(engine, result, steps, notes), "session")
        notes.extend(encoder.notes)
        writer.finish({"format": FORMAT, "format_version": FORMAT_VERSION, "created": _now(),
                       "versions": versions(), "notes": notes, "session": body})
    except OSError as error:
        writer.abort()
        raise SessionFileError(path, f"cannot write it: {error.strerror or error}") from error
    except BaseException:
        writer.abort()
        raise
    return Saved(path, path.stat().st_size, tuple(notes))


def versions() -> dict[str, str]:
    import torch

    return {"gradstep": __version__, "numpy": np.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _body(engine: Any, result: RunResult, steps: tuple[int, ...], notes: list[str]) -> dict[str, Any]:
    trace = engine.trace
    initial = _initial_weights(engine, notes)
    phase_keys = [*trace.keys, *(keys.before(n) for n in (initial or {}).get("numpy", {}))]
    return {
        "scenario": _scenario(engine.scenario, notes),
        "options": dict(engine.options),
        "run": {"device": engine.device, "dtype": engine.dtype_name, "tf32": engine.tf32, "rtol": engine.rtol,
                "atol": engine.atol, "steps_per_epoch": engine.steps_per_epoch,
                "total_steps": engine.total_steps, "next_step": engine.next_step},
        "patches": list(getattr(engine, "patches", None) or []),
        "summaries": {"keys": list(trace.keys), "max_abs": trace.max_abs, "max_rel": trace.max_rel,
                      "n_bad": trace.n_bad, "status": trace.status, "losses": trace.losses},
        "metrics": list(trace.metrics),
        "phases": {k: engine.phase_of(k) for k in dict.fromkeys(phase_keys)},
        "window": pack_window(_records(engine, result, steps, notes), notes),
        "checkpoints": [trace.checkpoints[s] for s in sorted(trace.checkpoints)],
        "interval": trace.interval,
        "initial_weights": initial,
        "final_state": engine.final_state(),
        "unmapped_torch": list(engine.unmapped_torch),
        "rounding_reasons": dict(getattr(engine, "rounding_reasons", {})),
        "rounding_summary": str(getattr(engine, "rounding_summary", "")),
        "result": {"stopped": result.stopped, "first_divergence": result.first_divergence,
                   "first_nonfinite": result.first_nonfinite, "drift": result.drift,
                   "error": _error(result.error)},
        "diagnosis": _diagnosis(engine, result),
    }


def _records(engine: Any, result: RunResult, steps: tuple[int, ...], notes: list[str]) -> list[Any]:
    """The window's records, then those of the steps that matter most (recomputed if the window lost them)."""
    window = engine.trace.window_steps()
    records = [r for r in map(engine.trace.recent, window) if r is not None]
    wanted = [s for s in (result.first_divergence and result.first_divergence.step, result.first_nonfinite, *steps)
              if s is not None]
    for step in dict.fromkeys(wanted):
        if 0 <= step < engine.next_step and step not in window:
            try:
                records.append(engine.record(step))
            except Exception as error:  # recomputing runs the scenario's code; the rest is still worth saving
                notes.append(f"step {step}'s full tensors not saved: {type(error).__name__}: {error}")
    return records


def _scenario(scenario: Any, notes: list[str]) -> dict[str, Any]:
    source = None
    if scenario.source_path:
        try:
            with open(scenario.source_path, "rb") as f:
                raw = f.read(MAX_SOURCE_BYTES + 1)
            source = raw[:MAX_SOURCE_BYTES].decode("utf-8", errors="replace")
            if len(raw) > MAX_SOURCE_BYTES:
                notes.append(f"scenario source cut at {MAX_SOURCE_BYTES} bytes")
        except OSError as error:
            notes.append(f"scenario source not saved: {error.strerror or error}")
    return {"name": scenario.name, "variant": scenario.variant, "summary": scenario.summary,
            "dtype": scenario.dtype, "seed": scenario.seed, "epochs": scenario.epochs,
            "source_path": scenario.source_path, "source": source}


def _initial_weights(engine: Any, notes: list[str]) -> dict[str, Any] | None:
    try:
        return engine.initial_weights()
    except Exception as error:  # a replay in the scenario's code; the rest of the session is still worth saving
        notes.append(f"initial weights not saved: {type(error).__name__}: {error}")
        return None


def _error(error: Any) -> dict[str, Any] | None:
    if error is None:
        return None
    inner = getattr(error, "error", error)
    return {"side": getattr(error, "side", ""), "function": getattr(error, "function", ""),
            "step": getattr(error, "step", None), "location": getattr(error, "location", "") or "",
            "type": type(inner).__name__, "message": str(inner), "text": str(error)}


def _diagnosis(engine: Any, result: RunResult) -> dict[str, Any] | None:
    """The diagnosis of the first divergence, made now: reading the file never runs the scenario's code."""
    if result.first_divergence is None:
        return None
    from gradstep.diagnosis import diagnose

    try:
        return {"findings": list(diagnose(engine)), "error": None}
    except Exception as error:  # advice: its failure must not stop the save
        return {"findings": [], "error": f"the diagnosis failed: {type(error).__name__}: {error}"}


# ---- loading ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioInfo:
    """What a session file says of its scenario: names and the source as text, never code."""

    name: str
    variant: str
    summary: str
    dtype: str
    seed: int
    epochs: int
    source_path: str
    source: str | None


@dataclass(frozen=True)
class SavedSession:
    """A session file's content, decoded and checked."""

    path: Path
    format_version: int
    created: str
    versions: dict[str, str]
    notes: tuple[str, ...]
    scenario: ScenarioInfo
    options: dict[str, Any]
    run: dict[str, Any]
    patches: tuple[Patch, ...]
    summaries: dict[str, Any]
    metrics: tuple[EpochMetrics, ...]
    phases: dict[str, str]
    window: RecordedWindow
    checkpoints: dict[int, Checkpoint]
    interval: int
    initial_weights: dict[str, dict[str, np.ndarray]] | None
    final_state: dict[str, dict[str, Any]]
    unmapped_torch: tuple[str, ...]
    rounding_reasons: dict[str, str]
    rounding_summary: str
    result: dict[str, Any]
    diagnosis: dict[str, Any] | None


def is_session_file(path: str | Path) -> bool:
    """Whether ``path`` is a file that looks like a saved session (by content: a zip with the manifest)."""
    return Path(path).is_file() and looks_like_session(path)


def load(path: str | Path) -> SavedSession:
    """Read and check a session file; :class:`SessionFileError` for anything wrong, and nothing else done."""
    path = Path(path)
    try:
        with ArchiveReader(path) as reader:
            manifest = reader.manifest()
            version = _check_format(manifest)
            tree = manifest.get("session")
            body = Decoder(reader.array, TYPES).decode(_statuses_of_format_1(tree) if version == 1 else tree,
                                                       "session")
            return _session(path, manifest, version, body)
    except (ArchiveError, TreeError, WindowError, _Invalid) as error:
        raise SessionFileError(path, str(error)) from None
    except MemoryError:
        raise SessionFileError(path, "too large to load in this machine's memory") from None


def _statuses_of_format_1(tree: Any) -> Any:
    """Format 1's encoded Status values as today's (ROUNDING came in between); the summaries follow."""
    if isinstance(tree, list):
        return [_statuses_of_format_1(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if tree.get("$enum") == "Status" and type(tree.get("value")) is int and tree["value"] in STATUS_FROM_FORMAT_1:
        return {**tree, "value": int(STATUS_FROM_FORMAT_1[tree["value"]])}
    return {k: _statuses_of_format_1(v) for k, v in tree.items()}


def _check_format(manifest: dict[str, Any]) -> int:
    if manifest.get("format") != FORMAT:
        raise _Invalid(f"not a gradstep session: its manifest's format is {shown(manifest.get('format'))}, "
                       f"not {FORMAT!r}")
    version = manifest.get("format_version")
    if type(version) is not int or version < 1:
        raise _Invalid(f"its format_version is {shown(version)}, not a version number")
    if version > FORMAT_VERSION:
        raise _Invalid(f"made by a newer gradstep: format {shown(version)}, this one reads up to {FORMAT_VERSION}")
    return version


def _session(path: Path, manifest: dict[str, Any], version: int, body: Any) -> SavedSession:
    body = _need(body, dict, "session")
    run = _run(_need(body.get("run"), dict, "run"))
    steps = run["next_step"]
    window = RecordedWindow(body.get("window"), steps)
    return SavedSession(
        path=path, format_version=version,
        created=str(manifest.get("created", "")),
        versions={str(k): str(v) for k, v in _need(manifest.get("versions", {}), dict, "versions").items()},
        notes=tuple(str(n) for n in _need(manifest.get("notes", []), list, "notes")),
        scenario=_scenario_info(_need(body.get("scenario"), dict, "scenario")),
        options=_need(body.get("options"), dict, "options"),
        run=run,
        patches=tuple(_patches(_need(body.get("patches"), list, "patches"))),
        summaries=_summaries(_need(body.get("summaries"), dict, "summaries"), steps, version),
        metrics=tuple(_metrics(body.get("metrics"))),
        phases=_phases(_need(body.get("phases"), dict, "phases")),
        window=window,
        checkpoints=_checkpoints(body.get("checkpoints")),
        interval=_int(body.get("interval"), "interval", low=1),
        initial_weights=_weights_pair(body.get("initial_weights")),
        final_state=_final_state(_need(body.get("final_state"), dict, "final_state")),
        unmapped_torch=tuple(_strings(body.get("unmapped_torch"), "unmapped_torch")),
        rounding_reasons={str(k): str(v) for k, v in _need(body.get("rounding_reasons", {}), dict,
                                                           "rounding_reasons").items()},
        rounding_summary=str(body.get("rounding_summary", "")),
        result=_result(_need(body.get("result"), dict, "result"), steps),
        diagnosis=_diagnosis_of(body.get("diagnosis")),
    )


def _need(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind):
        raise _Invalid(f"{what} is missing or malformed")
    return value


def _int(value: Any, what: str, low: int = 0, high: int | None = None) -> int:
    if type(value) is not int or value < low or (high is not None and value >= high):
        raise _Invalid(f"{what} is {shown(value)}, not a whole number in range")
    return value


def _optional_float(value: Any, what: str) -> float | None:
    if value is not None and (type(value) not in (int, float)):
        raise _Invalid(f"{what} is {shown(value)}, not a number")
    return value


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _Invalid(f"{what} is not a list of names")
    return value


def _run(run: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(run.get("device"), str) or run.get("dtype") not in TORCH_DTYPES:
        raise _Invalid("run: device or dtype missing")
    if run.get("tf32") not in (None, True, False):
        raise _Invalid("run: tf32 is not true, false or null")
    for name in ("rtol", "atol"):
        _optional_float(run.get(name), f"run {name}")
    _int(run.get("steps_per_epoch"), "run steps_per_epoch", low=1)
    _int(run.get("total_steps"), "run total_steps")
    _int(run.get("next_step"), "run next_step")
    return run


def _scenario_info(s: dict[str, Any]) -> ScenarioInfo:
    texts = [s.get(k) for k in ("name", "variant", "summary", "dtype", "source_path")]
    if not all(isinstance(t, str) for t in texts) or not isinstance(s.get("source"), (str, type(None))):
        raise _Invalid("scenario: its name, variant, summary, dtype or source is missing")
    return ScenarioInfo(*texts[:4], seed=_int(s.get("seed"), "scenario seed", low=-(1 << 63)),
                        epochs=_int(s.get("epochs"), "scenario epochs"), source_path=texts[4], source=s["source"])


def _patches(items: list) -> list[Patch]:
    for p in items:
        if not isinstance(p, Patch) or p.target not in TARGETS:
            raise _Invalid("patches: not a list of patches of known formulas")
    return items


def _items(value: Any, cls: type, what: str) -> list:
    if not isinstance(value, list) or not all(isinstance(v, cls) for v in value):
        raise _Invalid(f"{what} is not a list of {cls.__name__}")
    return value


def _metrics(value: Any) -> list[EpochMetrics]:
    items = _items(value, EpochMetrics, "metrics")
    for m in items:
        if not all(isinstance(v, (int, float, np.number)) for side in (m.numpy, m.torch) for v in side.values()):
            raise _Invalid(f"metrics of epoch {m.epoch} are not numbers")
    return items


_SUMMARY_KINDS = {"max_abs": "f", "max_rel": "f", "n_bad": "iu", "status": "iu", "losses": "f"}


def _summaries(s: dict[str, Any], steps: int, version: int = FORMAT_VERSION) -> dict[str, Any]:
    names = _strings(s.get("keys"), "summaries keys")
    if len(set(names)) != len(names):
        raise _Invalid("summaries keys repeat a name")
    for name, kinds in _SUMMARY_KINDS.items():
        array = s.get(name)
        width = 2 if name == "losses" else len(names)
        if not isinstance(array, np.ndarray) or array.dtype.kind not in kinds or array.shape != (steps, width):
            shape = getattr(array, "shape", None)
            raise _Invalid(f"summaries {name} has shape {shape}, not ({steps}, {width}) for {steps} steps "
                           f"and {len(names)} tensors")
    status = s["status"]
    newest = max(STATUS_FROM_FORMAT_1) if version == 1 else max(Status)
    if status.size and (status.min() < -1 or status.max() > newest):
        raise _Invalid("summaries status holds values that are not statuses")
    if version == 1:
        renumber = np.array([-1, *(int(STATUS_FROM_FORMAT_1[v]) for v in sorted(STATUS_FROM_FORMAT_1))])
        s = {**s, "status": renumber[status.astype(np.int64) + 1].astype(status.dtype)}
    return s


def _phases(phases: dict[str, Any]) -> dict[str, str]:
    if not all(p in keys.PHASES for p in phases.values()):
        raise _Invalid("phases: a phase that is not one of " + ", ".join(keys.PHASES))
    return phases


def _checkpoints(value: Any) -> dict[int, Checkpoint]:
    items = _items(value, Checkpoint, "checkpoints")
    out = {}
    for c in items:
        step = _int(c.step, "a checkpoint's step")
        if step in out:
            raise _Invalid(f"checkpoint {step} appears twice")
        out[step] = c
    return out


def _arrays(value: Any, what: str) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or not all(isinstance(v, np.ndarray) for v in value.values()):
        raise _Invalid(f"{what} is not a set of named arrays")
    return value


def _weights_pair(value: Any) -> dict[str, dict[str, np.ndarray]] | None:
    if value is None:
        return None
    value = _need(value, dict, "initial_weights")
    return {side: _arrays(value.get(side), f"initial_weights {side}") for side in ("numpy", "torch")}


def _final_state(value: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for side in ("numpy", "torch"):
        part = _need(value.get(side), dict, f"final_state {side}")
        loss = part.get("loss")
        if not isinstance(loss, (int, float, np.floating)) or isinstance(loss, bool):
            raise _Invalid(f"final_state {side} loss is not a number")
        out[side] = {"loss": float(loss), "weights": _arrays(part.get("weights"), f"final_state {side} weights")}
    return out


def _result(r: dict[str, Any], steps: int) -> dict[str, Any]:
    if r.get("stopped") not in STOPPED:
        raise _Invalid(f"result stopped is {shown(r.get('stopped'))}")
    d = r.get("first_divergence")
    if d is not None:
        _need(d, Divergence, "result first_divergence")
        _int(d.step, "the first divergence's step", high=max(steps, 1))
    if r.get("first_nonfinite") is not None:
        _int(r["first_nonfinite"], "the first NaN/Inf's step", high=max(steps, 1))
    if r.get("drift") is not None:
        _need(r["drift"], Drift, "result drift")
    error = r.get("error")
    if error is not None and not (isinstance(error, dict) and all(
            isinstance(error.get(k), str) for k in ("side", "function", "location", "type", "message", "text"))):
        raise _Invalid("result error is malformed")
    return r


def _diagnosis_of(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    value = _need(value, dict, "diagnosis")
    _items(value.get("findings"), Finding, "diagnosis findings")
    if not isinstance(value.get("error"), (str, type(None))):
        raise _Invalid("diagnosis error is malformed")
    return value
