"""Broadcasting that hides: an (N,) array against an (N, 1) one inside a function.

The NumPy side's functions (metrics included) are re-run at the step on watched
arrays (an ndarray subclass that notes every elementwise operation whose
operands are a vector and a column, (N,) against (M, 1), or two operands whose
shared length lands on different axes), and the torch side's forward and loss
under a TorchFunctionMode that does the same. Such a result is a table of
every pair, more elements than either input; reduced by a mean it is one
plausible-looking, wrong number. Each is noted with the scenario file and line
that ran it. A table past 2**24 elements is not built: the operation that would
build it ends the watched call (the sentinel has what it needs).
"""

from __future__ import annotations

import copy
import linecache
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from gradstep import keys
from gradstep.diagnosis.findings import Finding, num, shape_text
from gradstep.diagnosis.lines import is_user_file
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.replica import rng_preserved
from gradstep.diagnosis.view import StepView
from gradstep.scenario import set_position

SYMBOLS = {"subtract": "-", "add": "+", "multiply": "*", "divide": "/", "true_divide": "/", "not_equal": "!=",
           "equal": "==", "greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<=", "power": "**"}
MATMUL = {"matmul", "mm", "bmm", "dot", "mv", "inner", "outer", "einsum", "tensordot", "linear", "__matmul__",
          "__rmatmul__"}


TOO_BIG = 1 << 24  # elements: a table this big is noted, not built


@dataclass(frozen=True)
class Broadcast:
    side: str
    function: str
    operation: str
    shapes: tuple[tuple[int, ...], tuple[int, ...]]
    filename: str = ""
    lineno: int = 0
    source: str = ""

    @property
    def n(self) -> int:
        return max(max(s) for s in self.shapes)

    @property
    def result(self) -> tuple[int, ...]:
        return tuple(np.broadcast_shapes(*self.shapes))

    @property
    def location(self) -> str:
        return f"{Path(self.filename).name}:{self.lineno}" if self.filename else ""


def vector_against_column(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """One operand (N,), the other (N, 1), N > 1: the classic accidental outer broadcast."""
    return any(len(v) == 1 and v[0] > 1 and c == (v[0], 1) for v, c in ((a, b), (b, a)))


def outer_broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """A result with more elements than either operand implies: a vector against a column ((N,) with (M, 1)),
    or one length on different axes of the two operands ((N, K) with (N, 1, K)...)."""
    try:
        result = np.broadcast_shapes(a, b)
    except ValueError:
        return False
    size = int(np.prod(result))
    if size <= max(int(np.prod(a)), int(np.prod(b))) or min(int(np.prod(a)), int(np.prod(b))) <= 1:
        return False
    if any(len(v) == 1 and v[0] > 1 and len(c) == 2 and c[1] == 1 and c[0] > 1 for v, c in ((a, b), (b, a))):
        return True
    ra, rb = (1,) * (len(result) - len(a)) + tuple(a), (1,) * (len(result) - len(b)) + tuple(b)
    return any(da == db > 1 and i != j for i, da in enumerate(ra) for j, db in enumerate(rb)
               if ra[i] != rb[i] and ra[j] != rb[j])


class _TooBig(Exception):
    """Raised inside a watched call instead of building a table past TOO_BIG elements."""


class _Log:
    events: list[Broadcast] | None = None
    side, function = "", ""


def _note(operation: str, shapes: list[tuple[int, ...]]) -> None:
    if _Log.events is None or len(shapes) != 2 or operation in MATMUL:
        return
    if outer_broadcast(shapes[0], shapes[1]):
        filename, lineno = _user_line()
        source = linecache.getline(filename, lineno).strip() if filename else ""
        _Log.events.append(Broadcast(_Log.side, _Log.function, operation, (shapes[0], shapes[1]), filename,
                                     lineno, source))
        if int(np.prod(np.broadcast_shapes(*shapes))) > TOO_BIG:
            raise _TooBig


def _user_line() -> tuple[str, int]:
    """The innermost frame of the scenario's own code on the stack: where the operation was written."""
    frame = sys._getframe(2)
    while frame is not None:
        if is_user_file(frame.f_code.co_filename):
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back
    return "", 0


class Watched(np.ndarray):
    """An ndarray that reports vector-against-column broadcasts in the elementwise operations it enters."""

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        raw = [x.view(np.ndarray) if isinstance(x, Watched) else x for x in inputs]
        outs = kwargs.get("out")
        if outs:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Watched) else o for o in outs)
        if method == "__call__":
            _note(ufunc.__name__, [np.shape(x) for x in raw if isinstance(x, (np.ndarray, np.generic))])
        result = getattr(ufunc, method)(*raw, **kwargs)
        if outs:
            return outs[0] if len(outs) == 1 else outs
        return watch(result)


def watch(value: Any) -> Any:
    """Arrays (in dicts, lists, tuples too) as :class:`Watched`; anything else unchanged."""
    if isinstance(value, np.ndarray) and not isinstance(value, Watched) and value.dtype.kind in "biuf":
        return value.view(Watched)
    if isinstance(value, dict):
        return {k: watch(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(watch(v) for v in value)
    return value


class _TorchWatch(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        name = getattr(func, "__name__", str(func)).strip("_")
        if len(tensors) == 2:
            _note(name, [tuple(t.shape) for t in tensors])
        return func(*args, **kwargs)


@contextmanager
def recording(side: str, function: str, events: list[Broadcast]) -> Iterator[None]:
    previous = (_Log.events, _Log.side, _Log.function)
    _Log.events, _Log.side, _Log.function = events, side, function
    try:
        yield
    finally:
        _Log.events, _Log.side, _Log.function = previous


def watch_numpy_side(probe: Probe, step: int) -> list[Broadcast]:
    """Re-run NumPy's forward, loss, backward, update and metrics at ``step`` on watched arrays."""
    engine, record = probe.engine, probe.record(step)
    fns, hp = probe.scenario.numpy, copy.copy(engine.live.hp)
    set_position(hp, record.step, engine.steps_per_epoch)
    weights = {n: np.array(record.numpy[keys.before(n)]) for n in engine.live.numpy_weight_names(record)}
    batch = engine.live.data.batch(record.epoch, record.index)
    events: list[Broadcast] = []
    with rng_preserved():
        if fns.step is not None:
            _run(events, "numpy.step", fns.step, watch({n: w.copy() for n, w in weights.items()}), watch(dict(batch)),
                 hp, copy.deepcopy(engine.live.numpy.state))
            acts = None
        else:
            acts = _run(events, "numpy.forward", fns.forward, watch(dict(weights)), watch(dict(batch)), hp)
        if acts is not None:
            _run(events, "numpy.loss", fns.call_loss, acts, watch(dict(batch)), hp, watch(dict(weights)))
            grads = _run(events, "numpy.backward", fns.backward, watch(dict(weights)), acts, watch(dict(batch)), hp)
            if grads is not None:
                _run(events, "numpy.update", fns.update, watch({n: w.copy() for n, w in weights.items()}), grads,
                     copy.deepcopy(engine.live.numpy.state), hp)
        if fns.metrics is not None:
            _run(events, "numpy.metrics", fns.metrics, watch(dict(weights)), engine.live.data, hp)
    return events


def watch_torch_side(probe: Probe, step: int) -> list[Broadcast]:
    replica = probe.torch_replica(step)
    events: list[Broadcast] = []
    fns = replica.runner.fns
    if fns.step is not None:  # the whole loop body: its backward needs autograd
        with rng_preserved(), recording("torch", "torch.step", events), _TorchWatch():
            _quiet(fns.step, replica.runner.model, replica.runner.optimizer, replica.tbatch, replica.hp, {})
        return events
    with rng_preserved(), torch.no_grad():
        with recording("torch", "torch.forward", events), _TorchWatch():
            acts = _quiet(fns.forward, replica.runner.model, replica.tbatch, replica.hp)
        if acts is not None:
            with recording("torch", "torch.loss", events), _TorchWatch():
                _quiet(fns.call_loss, acts, replica.tbatch, replica.hp, replica.runner.model)
    return events


def _run(events: list[Broadcast], function: str, fn: Any, *args: Any) -> Any:
    side = function.split(".")[0]
    with recording(side, function, events), np.errstate(all="ignore"):
        return _quiet(fn, *args)


def _quiet(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except _TooBig:
        return None  # the table was noted; not building it is the point
    except Exception:  # the scenario's own code on unusual arrays: nothing to learn from a failure here
        return None


def broadcast_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    if probe is None:
        return []
    events = watch_numpy_side(probe, view.step) + watch_torch_side(probe, view.step)
    shown = {f.function for f in found if f.rule == "shape"}  # a visible (N, N) tensor already says it
    return [_finding(view, probe, e) for e in dict.fromkeys(events) if e.function not in shown]


def _finding(view: StepView, probe: Probe, event: Broadcast) -> Finding:
    n = event.n
    (a, b) = event.shapes
    result = shape_text(event.result)
    op = SYMBOLS.get(event.operation, event.operation)
    phase = event.function.split(".")[1]
    phases = {"forward": ("forward",), "loss": ("loss",), "backward": ("grad",), "update": ("update", "after"),
              "step": ("forward", "loss", "grad", "update", "after")}.get(phase, ())
    explained = view.diverged_in(*phases)[:3] if phases else []
    where = f"{event.function}, {event.location} `{event.source}`" if event.location else event.function
    cause = (f"{where} broadcasts a {shape_text(a)} array against a {shape_text(b)} one in `{op}`: the result is "
             f"a {result} table of every pair, not one value per sample, and a mean over it is a plausible-looking "
             "wrong number. Give both operands the same shape (reshape(-1, 1) or ravel()).")
    evidence = [f"{event.function}, step {view.step}: {event.operation} of {shape_text(a)} and {shape_text(b)} "
                f"gives {result}" + (f" at {event.location}" if event.location else "")]
    if int(np.prod(event.result)) > TOO_BIG:
        evidence.append(f"{result} is {int(np.prod(event.result))} elements: the sentinel noted it without building "
                        "it")
    evidence += _metric_evidence(probe) if phase == "metrics" else []
    return Finding(rule="broadcast", cause=cause, evidence=tuple(evidence), confidence=0.9, step=view.step,
                   tensor=explained[0] if explained else None, side=event.side, function=event.function,
                   tensors=tuple(explained), values={"n": n, "outer": 1.0}, file=event.filename or None,
                   line=event.lineno or None)


def _metric_evidence(probe: Probe) -> list[str]:
    metrics = probe.engine.trace.metrics
    if not metrics:
        return []
    last = metrics[-1]
    lines = []
    for name in last.numpy:
        if name in last.torch:
            lines.append(f"metric {name!r} at the end of epoch {last.epoch}: numpy {num(last.numpy[name])}, "
                         f"torch {num(last.torch[name])}")
    return lines
