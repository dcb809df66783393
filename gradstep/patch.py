"""Patching a scenario's formula from source, checking it, and keeping the history.

A patch is the full source of one function (``def ...``) replacing one of the
scenario's functions, e.g. ``numpy.backward`` or ``torch.loss``. It is compiled
in the scenario file's own namespace, so ``np``, ``torch`` and the file's
helpers resolve as they do in the file. **A patch is code and runs with your
rights**, exactly like the scenario file itself.

Nothing is swapped in until the patch has compiled, run on the step's inputs,
and returned what the original returns (names, shapes, dtypes, and no NaN/Inf
where the original had none). Patch files are plain Python text, readable and
re-appliable (``--patch FILE``), never pickles.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import os
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradstep.atomic import write_text_atomically
from gradstep.safe_text import printable
from gradstep.scenario import Scenario, set_position
from gradstep.stoppable import error_words

# What can be patched: the formulas a user suspects. (side field -> what it does)
TARGETS: dict[str, str] = {
    "numpy.forward": "NumPy forward",
    "numpy.loss": "NumPy loss",
    "numpy.backward": "NumPy gradient (backward)",
    "numpy.update": "NumPy update",
    "torch.forward": "torch forward",
    "torch.loss": "torch loss",
    "torch.backward": "torch backward",
    "torch.update": "torch update",
    "numpy.step": "NumPy step (the whole loop body)",
    "torch.step": "torch step (the whole loop body)",
    "torch.model": "torch model (the nn.Module)",
    "torch.optimizer": "torch optimizer",
    "numpy.metrics": "NumPy metrics (epoch end)",
    "torch.metrics": "torch metrics (epoch end)",
}
PIECES = {"numpy": ("numpy.forward", "numpy.loss", "numpy.backward", "numpy.update"),
          "torch": ("torch.forward", "torch.loss", "torch.backward", "torch.update")}
# Patchable beside the step or the pieces, when the scenario has them: what a side is built with, and reports.
BESIDE = {"numpy": ("numpy.metrics",), "torch": ("torch.model", "torch.optimizer", "torch.metrics")}


class PatchError(Exception):
    """A patch that cannot be swapped in: says why, and the line of the patch when it knows."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        message = printable(message, lines=True)  # it quotes the user's exceptions, shown on the terminal
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True)
class Patch:
    target: str  # e.g. "numpy.backward"
    source: str  # the full ``def`` of the replacement

    @property
    def label(self) -> str:
        return f"{self.target} ({_function_name(self.source) or '?'})"


def targets_for(scenario: Scenario) -> list[str]:
    """What can be patched in ``scenario``: a side's step function (the whole loop body), else its pieces; and
    the torch model and optimizer, and the metrics, where it has them."""
    out = []
    for side in ("numpy", "torch"):
        fns = getattr(scenario, side)
        out += [f"{side}.step"] if fns.step is not None else list(PIECES[side])
        out += [t for t in BESIDE[side] if getattr(fns, t.partition(".")[2]) is not None]
    return out


def current_function(scenario: Scenario, target: str) -> Callable[..., Any]:
    side, _, name = target.partition(".")
    if target not in TARGETS:
        raise PatchError(f"cannot patch {target!r}; patchable: {', '.join(TARGETS)}")
    if target in BESIDE[side] and target not in targets_for(scenario):
        raise PatchError(f"{scenario.name}'s {side} side has no {name}")
    if target not in targets_for(scenario):
        has_step = getattr(scenario, side).step is not None
        instead = (f"its step function is the whole loop body: patch {side}.step" if has_step
                   else f"it has no step function: patch {', '.join(PIECES[side])}")
        raise PatchError(f"{scenario.name}'s {side} side has no {name}: {instead}")
    return getattr(getattr(scenario, side), name)


def source_of(scenario: Scenario, target: str, patches: PatchSet | None = None) -> str:
    """The source the editor opens with: the patch in force, else the function's own."""
    if patches is not None:
        applied = patches.in_force().get(target)
        if applied is not None:
            return applied.source
    fn = current_function(scenario, target)
    if getattr(fn, "__name__", "") == "<lambda>":
        return _lambda_as_def(fn, target)
    try:
        return printable(textwrap.dedent(inspect.getsource(fn)), lines=True)
    except (OSError, TypeError):
        return f"# the source of {getattr(fn, '__name__', target)} is not available\n"


def _lambda_as_def(fn: Callable[..., Any], target: str) -> str:
    """A lambda (``optimizer=lambda net, hp: ...``) written as the ``def`` a patch replaces it with."""
    code, name = fn.__code__, target.partition(".")[2]
    try:
        tree = ast.parse(inspect.getsource(inspect.getmodule(fn) or fn))
    except (OSError, TypeError, SyntaxError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in ast.walk(tree):
        if isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno and \
                [a.arg for a in node.args.args] == list(code.co_varnames[:code.co_argcount]):
            return f"def {name}({ast.unparse(node.args)}):\n    return {ast.unparse(node.body)}\n"
    return f"# the source of this lambda ({name}) is not available\n"


def source_row(scenario: Scenario, target: str, file: str | None, line: int | None) -> int | None:
    """The row (from 0) of ``file``'s line ``line`` in ``target``'s own source, as the editor opens it; None when
    the function is not in that file or does not span that line (a diagnosis may point into a helper)."""
    if not file or not line or target not in TARGETS:
        return None
    fn = current_function(scenario, target)
    try:
        lines, start = inspect.getsourcelines(fn)
        same = Path(inspect.getsourcefile(fn) or "").resolve() == Path(file).resolve()
    except (OSError, TypeError):
        return None
    return line - start if same and start <= line < start + len(lines) else None


def compile_patch(scenario: Scenario, patch: Patch) -> Callable[..., Any]:
    """Compile ``patch.source`` in the scenario's namespace and return the function it defines."""
    original = current_function(scenario, patch.target)
    try:
        tree = ast.parse(patch.source, filename=f"<patch {patch.target}>")
    except SyntaxError as error:
        raise PatchError(f"syntax error: {error.msg}", error.lineno) from error
    defs = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    if not defs:
        raise PatchError("the patch defines no function (write the whole `def ...:`)")
    namespace = dict(getattr(original, "__globals__", {}))
    try:
        exec(compile(tree, f"<patch {patch.target}>", "exec"), namespace)  # the user's own code, by design
    except (Exception, SystemExit) as error:
        raise PatchError(f"while defining the patch: {error_words(error)}", patch_line(error)) from error
    # The function named like the original, else the last one defined.
    names = [d.name for d in defs]
    chosen = original.__name__ if original.__name__ in names else names[-1]
    return namespace[chosen]


def patched_scenario(scenario: Scenario, patches: list[Patch]) -> Scenario:
    """``scenario`` with every patch compiled and swapped in, in order."""
    for patch in patches:
        fn = compile_patch(scenario, patch)
        side, _, name = patch.target.partition(".")
        scenario = dataclasses.replace(scenario, **{side: dataclasses.replace(getattr(scenario, side), **{name: fn})})
    return scenario


def patch_line(error: BaseException) -> int | None:
    """The line inside the patch where ``error`` was raised, if it was raised there."""
    tb = error.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith("<patch "):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _function_name(source: str) -> str | None:
    match = re.search(r"^\s*def\s+(\w+)", source, re.MULTILINE)
    return match.group(1) if match else None


def replay(
    engine: Any,
    base: Scenario,
    patches: list[Patch],
    steps: int,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Any | None:
    """A new engine for ``base`` with ``patches``, run deterministically from step 0 to ``steps``.

    Returns None when cancelled: the caller keeps its previous engine, untouched.
    """
    from gradstep.engine import Engine

    fresh = Engine(patched_scenario(base, patches), **engine.options)
    result = fresh.run(steps=steps, progress=progress, cancelled=cancelled)
    return None if result.stopped == "cancelled" else fresh


# ---- validation ----------------------------------------------------------------


def validate(engine: Any, patch: Patch, step: int) -> None:
    """Run the patched function beside the original on ``step``'s inputs; raise PatchError if it misbehaves.

    Checks that it runs, and that its outputs have the original's names, shapes
    and dtypes, with no NaN/Inf where the original has none. The engine and the
    live model are left untouched (torch functions run on a copy of the model).
    """
    scenario = engine.scenario
    patched = compile_patch(scenario, patch)
    original = current_function(scenario, patch.target)
    step = max(0, min(step, engine.next_step - 1)) if engine.next_step else 0
    side, _, name = patch.target.partition(".")
    runner = _numpy_probe if side == "numpy" else _torch_probe
    expected = runner(engine, step, name, original)
    got = _run_patched(runner, engine, step, name, patched)
    _same_structure(expected, got)


def _run_patched(runner: Callable[..., Any], engine: Any, step: int, name: str, fn: Callable[..., Any]) -> Any:
    try:
        return runner(engine, step, name, fn)
    except PatchError:
        raise
    except (Exception, SystemExit) as error:  # sys.exit, or os._exit in the app, ends the check, not gradstep
        raise PatchError(error_words(error), patch_line(error)) from error


def _numpy_probe(engine: Any, step: int, name: str, fn: Callable[..., Any]) -> Any:
    """Call one NumPy function the way the engine does, on copies of ``step``'s inputs."""
    record, batch, hp = _inputs(engine, step)
    weights = {k.partition(" ")[2]: np.array(v, copy=True) for k, v in record.numpy.items() if k.startswith("before ")}
    fns = engine.scenario.numpy
    if name == "metrics":
        return fn(weights, engine.live.data, hp)
    if name == "step":
        produced = fn(weights, batch, hp, copy.deepcopy(engine.live.numpy.state))
        if not isinstance(produced, Mapping):
            raise PatchError(f"the patch returns a {type(produced).__name__}; a step returns a dict")
        return {**produced, **{f"after {n}": w for n, w in weights.items()}}
    acts = fns.forward(weights, batch, hp) if name != "forward" else None
    if name == "forward":
        return fn(weights, batch, hp)
    if name == "loss":
        return dataclasses.replace(fns, loss=fn).call_loss(acts, batch, hp, weights)
    grads = fns.backward(weights, acts, batch, hp) if name != "backward" else None
    if name == "backward":
        return fn(weights, acts, batch, hp)
    new = fn(weights, grads, copy.deepcopy(engine.live.numpy.state), hp)
    return new if new is not None else weights


def _torch_probe(engine: Any, step: int, name: str, fn: Callable[..., Any]) -> Any:
    """Call one torch function on a copy of the live model (its current weights) with ``step``'s batch."""
    import torch

    _, batch, hp = _inputs(engine, step)
    live = engine.live.torch
    if name == "model":
        return _built_parameters(engine, fn, hp)
    model = copy.deepcopy(live.model)
    make_optimizer = fn if name == "optimizer" else live.fns.optimizer
    optimizer = make_optimizer(model, hp) if make_optimizer else None
    tbatch = live.to_torch_batch(batch)
    fns = engine.scenario.torch
    if name == "metrics":
        with torch.no_grad():
            return fn(model, engine.live.data, hp)
    if name == "step" or (name == "optimizer" and fns.step is not None):  # the optimizer: a whole step with it
        produced = (fn if name == "step" else fns.step)(model, optimizer, tbatch, hp, copy.deepcopy(live.state))
        if not isinstance(produced, Mapping):
            raise PatchError(f"the patch returns a {type(produced).__name__}; a step returns a dict")
        with torch.no_grad():
            after = {f"after {n}": p.detach().clone() for n, p in model.named_parameters()}
        return {**{k: v.detach() if torch.is_tensor(v) else v for k, v in produced.items()}, **after}
    forward = fn if name == "forward" else fns.forward
    acts = forward(model, tbatch, hp)
    if name == "forward":
        return {k: v.detach() for k, v in acts.items()}
    losses = (dataclasses.replace(fns, loss=fn) if name == "loss" else fns).call_loss(acts, tbatch, hp, model)
    if name == "loss":
        return {k: v.detach() for k, v in losses.items()} if isinstance(losses, Mapping) else losses.detach()
    loss = losses["loss"] if isinstance(losses, Mapping) else losses
    (fn if name == "backward" else fns.backward)(model, optimizer, loss, hp)
    if name in ("update", "optimizer"):
        (fn if name == "update" else fns.update)(model, optimizer, copy.deepcopy(live.state), hp)
    with torch.no_grad():
        return {n: p.detach().clone() for n, p in model.named_parameters()}


def _built_parameters(engine: Any, fn: Callable[..., Any], hp: Any) -> dict[str, Any]:
    """The parameters of the model ``fn`` builds, made as the engine makes it (its device and dtype); the random
    generators, which a model's initialisation draws from, are left as they were for the run."""
    import torch

    live = engine.live.torch
    weights = engine.initial_weights()["numpy"]
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            model = dataclasses.replace(engine.scenario.torch, model=fn).build_model(hp, weights)
    finally:
        np.random.set_state(numpy_state)
    if not isinstance(model, torch.nn.Module):
        raise PatchError(f"the patch returns a {type(model).__name__}; the model function returns an nn.Module")
    model = model.to(device=live.device, dtype=live.dtype)
    return {n: p.detach() for n, p in model.named_parameters()}


def _inputs(engine: Any, step: int) -> tuple[Any, Any, Any]:
    if engine.next_step == 0:
        # Nothing run yet: the initial weights and the first batch.
        weights = engine.initial_weights()["numpy"]
        record = type("Initial", (), {"numpy": {f"before {n}": w for n, w in weights.items()}})()
        return record, engine.live.data.batch(0, 0), _hyper_at(engine, 0)
    record = engine.record(step)
    return record, engine.live.data.batch(record.epoch, record.index), _hyper_at(engine, step)


def _hyper_at(engine: Any, step: int) -> Any:
    """The run's hyper-parameters with ``hp.step``, ``hp.epoch`` and ``hp.index`` those of ``step``."""
    hp = copy.copy(engine.live.hp)
    set_position(hp, step, engine.steps_per_epoch)
    return hp


def _same_structure(expected: Any, got: Any) -> None:
    if isinstance(expected, Mapping) or isinstance(got, Mapping):
        exp = dict(expected) if isinstance(expected, Mapping) else {"loss": expected}
        new = dict(got) if isinstance(got, Mapping) else {"loss": got}
        missing = [k for k in exp if k not in new]
        extra = [k for k in new if k not in exp]
        if missing:
            raise PatchError(f"the patch returns no {', '.join(map(repr, missing))} (the original does)")
        if extra:
            raise PatchError(f"the patch returns {', '.join(map(repr, extra))}, which the original does not")
        for key in exp:
            _same_array(key, exp[key], new[key])
        return
    _same_array("result", expected, got)


def _same_array(key: str, expected: Any, got: Any) -> None:
    e, g = _as_array(expected), _as_array(got)
    if e.shape != g.shape:
        raise PatchError(f"{key!r} has shape {g.shape}; the original gives {e.shape}")
    if e.dtype != g.dtype:
        raise PatchError(f"{key!r} has dtype {g.dtype}; the original gives {e.dtype}")
    if e.dtype.kind == "f" and np.isfinite(e).all() and not np.isfinite(g).all():
        raise PatchError(f"{key!r} has NaN or Inf where the original has none")


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


# ---- history and files -----------------------------------------------------------


@dataclass
class PatchSet:
    """Applied patches with undo and redo; ``in_force`` is the latest patch per target."""

    applied: list[Patch] = field(default_factory=list)
    undone: list[Patch] = field(default_factory=list)

    def apply(self, patch: Patch) -> None:
        self.applied.append(patch)
        self.undone.clear()

    def undo(self) -> Patch | None:
        if not self.applied:
            return None
        patch = self.applied.pop()
        self.undone.append(patch)
        return patch

    def redo(self) -> Patch | None:
        if not self.undone:
            return None
        patch = self.undone.pop()
        self.applied.append(patch)
        return patch

    def reset(self) -> None:
        self.undone.extend(reversed(self.applied))
        self.applied.clear()

    def in_force(self) -> dict[str, Patch]:
        return {p.target: p for p in self.applied}

    def labels(self) -> list[str]:
        return [p.label for p in self.in_force().values()]


_MARKER = "# --- gradstep patch: "
_KEPT_MARKER = "# --- gradstep patch, kept (not in force): "
_HEADER = (
    "# gradstep patches for scenario {name!r}, variant {variant!r}.\n"
    "# Plain Python: each section replaces one function. Re-apply with --patch FILE.\n"
)
_KEPT_HEADER = (
    "# Sections marked 'kept' are not in force (undone, reset, replaced, or from an earlier session):\n"
    "# --patch skips them. They are here so that no patch once applied is lost.\n"
)
_DRAFTS_HEADER = (
    "# gradstep drafts for scenario {name!r}, variant {variant!r}: text typed in the patch editor, not applied.\n"
    "# The debugger reopens them in its editor; --patch never applies this file's sections.\n"
)


@dataclass(frozen=True)
class PatchFile:
    """A patch file's sections: the patches in force (what --patch applies) and the ones kept beside them."""

    in_force: list[Patch]
    kept: list[Patch]


def dumps(patches: list[Patch], scenario: Scenario, kept: list[Patch] = ()) -> str:
    parts = [_HEADER.format(name=scenario.name, variant=scenario.variant)]
    if kept:
        parts.append(_KEPT_HEADER)
    for patch in patches:
        parts.append(f"\n{_MARKER}{patch.target} ---\n{patch.source.rstrip()}\n")
    for patch in kept:
        parts.append(f"\n{_KEPT_MARKER}{patch.target} ---\n{patch.source.rstrip()}\n")
    return "".join(parts)


def parse(text: str) -> PatchFile:
    """The sections of a patch file, in order (the latest in force for a target wins when applied)."""
    sections: list[tuple[bool, Patch]] = []
    current: tuple[bool, str] | None = None
    lines: list[str] = []

    def close() -> None:
        if current is not None:
            source = printable("\n".join(lines).strip("\n"), lines=True) + "\n"  # escapes mean the same in strings
            sections.append((current[0], Patch(current[1], source)))

    for line in text.splitlines():
        marker = _MARKER if line.startswith(_MARKER) else _KEPT_MARKER if line.startswith(_KEPT_MARKER) else None
        if marker is None:
            if current is not None:
                lines.append(line)
            continue
        close()
        target = line[len(marker):].removesuffix("---").strip()
        if target not in TARGETS:
            raise PatchError(f"unknown patch target {target!r} in the patch file")
        current, lines = (marker == _MARKER, target), []
    close()
    return PatchFile([p for force, p in sections if force], [p for force, p in sections if not force])


def loads(text: str) -> list[Patch]:
    """The patches in force of a patch file, in order (the latest for a target wins when applied)."""
    return parse(text).in_force


def read_file(path: str | Path) -> PatchFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise PatchError(f"cannot read patch file {path}: it is not UTF-8 text") from error
    except OSError as error:
        raise PatchError(f"cannot read patch file {path}: {error.strerror or error}") from error
    return parse(text)


def load_file(path: str | Path) -> list[Patch]:
    return read_file(path).in_force


def default_patch_file(scenario: Scenario) -> Path:
    """Where applied patches are saved as they are applied: $XDG_STATE_HOME/gradstep/patches/."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{scenario.name}-{scenario.variant}")
    return base / "gradstep" / "patches" / f"{safe}.py"


def save(patches: PatchSet, scenario: Scenario, path: Path | None = None, kept: list[Patch] = ()) -> Path:
    """Write the patches in force, and ``kept`` after them, atomically (a crash never leaves half a file).

    A symlink is written through; a path that is not a regular file is refused (``NotARegularFile``).
    """
    return write_text_atomically(path or default_patch_file(scenario),
                                 dumps(list(patches.in_force().values()), scenario, kept))


def drafts_file(patch_file: Path) -> Path:
    """Where the editor's unapplied text is kept as it is typed: beside the patch file."""
    return patch_file.with_name(f"{patch_file.name.removesuffix('.py')}.drafts.py")


def dumps_drafts(drafts: Mapping[str, str], scenario: Scenario) -> str:
    parts = [_DRAFTS_HEADER.format(name=scenario.name, variant=scenario.variant)]
    for target, text in drafts.items():
        parts.append(f"\n{_MARKER}{target} ---\n{text.rstrip()}\n")
    return "".join(parts)
