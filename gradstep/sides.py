"""The two sides of a scenario, each able to take one step and report its tensors.

A side's step returns ``{key: array}`` in the NumPy side's names and layout:
``"before w"``, the batch names, the activation names, the loss-dict names,
``"grad w"`` and ``"after w"`` (see :mod:`gradstep.keys`). Torch tensors are
converted through the scenario's mapping, so the comparison never needs to
know which side a layout came from.

A side can also save and restore its whole state (weights, optimizer state,
accumulated gradients, random generators), which is what makes replay from a
checkpoint bit-identical to the first run.
"""

from __future__ import annotations

import copy
import difflib
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradstep import keys
from gradstep.loader import mapping_line
from gradstep.safe_text import is_printable, printable, shown
from gradstep.scenario import Batch, Hyper, Scenario, TensorMap
from gradstep.step_function import (
    GradientWatch,
    StepContractError,
    StepOutputs,
    definition_site,
    numpy_outputs,
    read_outputs,
    torch_value,
)
from gradstep.stoppable import Stopped, error_words

Tensors = dict[str, np.ndarray]


class ScenarioError(Exception):
    """The scenario's own code failed: says which side, which function, where.

    The text is made when asked for, so the step (known only to the engine,
    which sets it on the way out) and a location found later are in it.
    """

    def __init__(self, side: str, function: str, error: BaseException, step: int | None = None):
        self.side, self.function, self.error, self.step = side, function, error, step
        self.location = _user_frame(error)
        super().__init__(side, function, error)

    @property
    def broke_contract(self) -> bool:
        """What the function returned is not what gradstep reads (bad input), rather than its code failing."""
        return isinstance(self.error, StepContractError)

    def __str__(self) -> str:
        at = f" at step {self.step}" if self.step is not None else ""
        where = f" ({self.location})" if self.location else ""
        return printable(f"{self.side} {self.function}{at}{where}: {error_words(self.error)}", lines=True)


class ContractError(ScenarioError):
    """The scenario itself is wrong, not a step's numbers: a function returned what gradstep cannot use, or
    the mapping does not fit the model. ``gradstep check`` exits 2 on it, as on a file that does not load."""


def mapping_error(error: Exception, source_path: str) -> ScenarioError:
    """A mapping that does not fit the model, located at its TensorMap's line.

    Such errors are found in gradstep's own code, checking the mapping against
    the model: the user's file has no frame in them to point at.
    """
    wrapped = ContractError("torch", "mapping", error)
    if source_path and not wrapped.location:
        line = mapping_line(source_path, str(error.args[0] if error.args else error))
        wrapped.location = f"{source_path}:{line}" if line else source_path
    return wrapped


# Frames in these folders are gradstep's own, not the user's; bundled scenarios are the user's kind of code.
_PACKAGE = Path(__file__).resolve().parent
_BUNDLED = _PACKAGE / "scenarios"
_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def _user_frame(error: BaseException) -> str:
    """``file:line`` of the innermost frame outside gradstep and the libraries."""
    tb = error.__traceback__
    found = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if _is_user_file(filename):
            found = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _is_user_file(filename: str) -> bool:
    path = Path(filename).resolve()
    if path.is_relative_to(_BUNDLED):
        return True
    if "site-packages" in filename or "dist-packages" in filename or path.is_relative_to(_STDLIB):
        return False
    return not path.is_relative_to(_PACKAGE)


def call(side: str, function: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call a scenario function, turning its exceptions into :class:`ScenarioError`, and check what it returns
    (:func:`check_returned`)."""
    try:
        value = fn(*args)
    except ScenarioError:
        raise
    except (Exception, SystemExit) as error:  # the scenario is user code: anything can come out, sys.exit too
        raise ScenarioError(side, function, error) from error
    except Stopped as stop:  # escape or quit while it ran and did not return: say where it was stopped
        if getattr(stop, "where", None) is None:
            stop.where = ScenarioError(side, function, stop)
        raise
    check_returned(side, function, fn, value)
    return value


# ---- what each function must return ---------------------------------------------------------------
# Checked as it returns: a list from a forward, a string from a loss, an empty data set are one message at
# the function's own line, not a traceback from deep inside gradstep. Cheap: a few isinstance per step.

_ARRAYS = (np.ndarray, torch.Tensor)
_NUMBERS = (float, int, np.generic)
_CHECKED_NAMES: set[str] = set()  # names already found printable: the same few come back every step


def _what(value: Any) -> str:
    kind = type(value).__name__
    if isinstance(value, (list, tuple, dict, str)) and len(value) == 0:
        return f"an empty {kind}"
    return f"a {kind}" if not isinstance(value, (str, int, float)) else f"the {kind} {shown(value, 30)}"


def _numeric_problem(name: str, value: Any) -> str | None:
    if isinstance(value, _ARRAYS):
        if isinstance(value, np.ndarray) and value.dtype.kind not in "biufc":
            return f"{shown(name)} is an array of {value.dtype}, not of numbers"
        return None
    if isinstance(value, _NUMBERS) and not isinstance(value, (np.str_, np.bytes_, np.void)):
        return None
    kind = np.asarray(value).dtype.kind if isinstance(value, (list, tuple)) else "O"
    return None if kind in "biufc" else f"{shown(name)} is {_what(value)}, not an array of numbers"


def _named_arrays(value: Any, expected: str = "a dict of named arrays, {name: array}") -> str | None:
    if not isinstance(value, Mapping):
        return f"it returned {_what(value)}; it must return {expected}"
    for name, array in value.items():
        if name not in _CHECKED_NAMES:
            if not isinstance(name, str):
                return f"it returned the name {shown(name)}; names must be strings"
            if not is_printable(name):
                return f"it returned the name {shown(name)}: a name may not hold control characters"
            _CHECKED_NAMES.add(name)
        problem = _numeric_problem(name, array)
        if problem:
            return f"in what it returned, {problem}"
    return None


def _loss(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return _named_arrays(value) if "loss" in value else (
            "it returned a dict without a 'loss' entry; it must return the loss (a number, an array or a tensor) "
            "or a dict whose 'loss' is it")
    problem = _numeric_problem("loss", value)
    return None if problem is None else (
        f"it returned {_what(value)}; it must return the loss (a number, an array or a tensor), or a dict whose "
        "'loss' is it")


def _optional_arrays(value: Any) -> str | None:
    return None if value is None else _named_arrays(value, "the new weights as {name: array}, or None (in place)")


_RETURNS = {
    ("numpy", "forward"): _named_arrays, ("numpy", "loss"): _loss, ("numpy", "backward"): _named_arrays,
    ("numpy", "update"): _optional_arrays, ("torch", "forward"): _named_arrays, ("torch", "loss"): _loss,
    ("scenario", "init"): _named_arrays, ("scenario", "data.batch"): _named_arrays,
}


def check_returned(side: str, function: str, fn: Callable[..., Any], value: Any) -> None:
    """Raise :class:`ContractError`, at ``fn``'s definition, if ``value`` is not what ``side.function`` returns."""
    check = _RETURNS.get((side, function))
    problem = check(value) if check is not None else None
    if problem:
        error = ContractError(side, function, TypeError(problem))
        error.location = _defined_at(fn, function)
        raise error


def check_data(fn: Callable[..., Any], data: Any) -> None:
    """What ``scenario.data(hp)`` returned: minibatches by (epoch, index), at least one per epoch."""
    count = getattr(data, "steps_per_epoch", None)
    if not callable(getattr(data, "batch", None)) or isinstance(count, bool) or not isinstance(count, int) \
            or count < 1:
        has = "" if count is None else f" (its steps_per_epoch is {shown(count)})"
        error = ContractError("scenario", "data", TypeError(
            f"it returned {_what(data)}{has}; it must return the minibatches: an object with steps_per_epoch, a "
            "positive int, and batch(epoch, index), such as gradstep.scenario.Minibatches"))
        error.location = _defined_at(fn)
        raise error


def _defined_at(fn: Callable[..., Any], function: str = "") -> str:
    """Where ``fn`` is defined; for a side's wrapper (``call_loss``), the user's own ``function`` it calls."""
    own = getattr(getattr(fn, "__self__", None), function, None) if function else None
    fn = own if callable(own) else fn
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__func__", None), "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else ""


def updates(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray]) -> Tensors:
    """``"update w"``: what the step changed, ``after - before``, in the weight's own dtype.

    Exact wherever the update is less than the weight itself (Sterbenz), so it is
    the update as the side stored it, rounding of ``after`` included.
    """
    out: Tensors = {}
    for name, new in after.items():
        old = before.get(name)
        if old is not None and np.shape(old) == np.shape(new) and new.dtype.kind == "f":
            out[keys.update(name)] = np.subtract(new, old, dtype=new.dtype)
    return out


def _as_loss_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        if "loss" not in value:
            raise ValueError("a loss dict must have a 'loss' entry")
        return dict(value)
    return {"loss": value}


class NumpyRunner:
    """Runs the NumPy side's plain functions on its own weights and state."""

    def __init__(self, scenario: Scenario, hp: Hyper, weights: Mapping[str, np.ndarray]):
        self.fns = scenario.numpy
        self.hp = hp
        self.weights: dict[str, np.ndarray] = {n: np.array(w, copy=True) for n, w in weights.items()}
        self.state: dict[str, Any] = {}
        self.state_before: dict[str, Any] = {}  # ``state`` as the latest step found it
        self.loss_names: tuple[str, ...] = ()

    def step(self, batch: Batch, weights: Mapping[str, np.ndarray] | None = None,
             state: Mapping[str, Any] | None = None) -> Tensors:
        """One step on ``batch``; or the latest step again, from ``weights`` instead of its own
        (the local error: it starts from the state that step started from, or from ``state`` — torch's,
        mapped by the scenario — and nothing is kept)."""
        own = weights is None
        start = self.weights if own else dict(weights)
        if own:
            # An update that keeps state (momentum) changes it in place: keep what the step starts from.
            self.state_before = copy.deepcopy(self.state) if self.state else {}
        state = self.state if own else copy.deepcopy(dict(state) if state is not None else self.state_before)
        out: Tensors = {keys.before(n): w for n, w in start.items()}
        out.update(batch)
        # The update may work in place: never on the arrays recorded as "before". In their own memory
        # order: the local error starts from torch's weights, whose transposed ones are Fortran-ordered.
        work = {n: w.copy(order="K") for n, w in start.items()}
        if self.fns.step is not None:
            after = self._whole_step(work, batch, state, out)
        else:
            after = self._pieces_step(start, work, batch, state, out)
        after = {n: np.asarray(w) for n, w in after.items()}
        out.update(updates(start, after))
        out.update({keys.after(n): w for n, w in after.items()})
        if own:
            self.weights = after
        return out

    def _whole_step(self, work: dict[str, np.ndarray], batch: Batch, state: dict, out: Tensors) -> dict:
        """The user's loop body on ``work`` (updated in place): record what it returns."""
        produced = call("numpy", "step", self.fns.step, work, batch, self.hp, state)
        parts = _read_step(produced, "numpy", self.fns.step)
        self.loss_names = tuple(parts.losses)
        out.update(numpy_outputs(parts))
        return work

    def _pieces_step(self, start: dict, work: dict, batch: Batch, state: dict, out: Tensors) -> dict:
        acts = call("numpy", "forward", self.fns.forward, start, batch, self.hp)
        out.update(acts)
        losses = _as_loss_dict(call("numpy", "loss", self.fns.call_loss, acts, batch, self.hp, start))
        self.loss_names = tuple(losses)
        out.update({n: np.asarray(v) for n, v in losses.items()})
        grads = call("numpy", "backward", self.fns.backward, start, acts, batch, self.hp)
        out.update({keys.grad(n): np.asarray(g) for n, g in grads.items()})
        new = call("numpy", "update", self.fns.update, work, grads, state, self.hp)
        return dict(new) if new is not None else work

    def advance(self, batch: Batch) -> None:
        """One step with nothing recorded: how a replay catches up to the step it was asked for."""
        # In place is safe: a replay's weights are its own copies, never recorded ones.
        if self.fns.step is not None:
            call("numpy", "step", self.fns.step, self.weights, batch, self.hp, self.state)
            return
        acts = call("numpy", "forward", self.fns.forward, self.weights, batch, self.hp)
        call("numpy", "loss", self.fns.call_loss, acts, batch, self.hp, self.weights)
        grads = call("numpy", "backward", self.fns.backward, self.weights, acts, batch, self.hp)
        new = call("numpy", "update", self.fns.update, self.weights, grads, self.state, self.hp)
        if new is not None:
            self.weights = {n: np.asarray(w) for n, w in new.items()}

    def metrics(self, data: Any) -> dict[str, float]:
        if self.fns.metrics is None:
            return {}
        return dict(call("numpy", "metrics", self.fns.metrics, self.weights, data, self.hp))

    def snapshot(self) -> dict[str, Any]:
        return {
            "weights": {n: w.copy() for n, w in self.weights.items()},
            "state": copy.deepcopy(self.state),
            "rng": np.random.get_state(),
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.weights = {n: w.copy() for n, w in snap["weights"].items()}
        self.state = copy.deepcopy(snap["state"])
        np.random.set_state(snap["rng"])


@dataclass(frozen=True)
class _ParamMap:
    numpy_name: str
    torch_names: tuple[str, ...]
    to_numpy: Callable[..., np.ndarray]
    to_torch: Callable[[np.ndarray], tuple[np.ndarray, ...]]


class TorchRunner:
    """Runs the torch side: model, loss, backward, update, with tensors captured by name."""

    def __init__(
        self,
        scenario: Scenario,
        hp: Hyper,
        weights: Mapping[str, np.ndarray],
        device: str,
        dtype: torch.dtype,
    ):
        self.fns = scenario.torch
        self.hp = hp
        self.device = torch.device(device)
        self.dtype = dtype
        model = call("torch", "model", self.fns.build_model, hp, weights)
        self.model = model.to(device=self.device, dtype=dtype)
        self.params = dict(self.model.named_parameters())
        self.weight_maps, self.act_maps = _split_mapping(scenario.mapping, self.params)
        self._last_after: Tensors | None = None
        self._maps_checked = False
        self._source_path = scenario.source_path
        self._state_from_torch = getattr(scenario, "state_from_torch", None)
        self.state_for_numpy: dict[str, Any] | None = None  # torch's state before the latest update, NumPy's way
        if scenario.share_init:
            self._load_weights(weights)
        self.optimizer = call("torch", "optimizer", self.fns.optimizer, self.model, hp) if self.fns.optimizer else None
        self.scheduler = (call("torch", "scheduler", self.fns.scheduler, self.optimizer, hp)
                          if self.fns.scheduler else None)
        self.state: dict[str, Any] = {}
        self.loss_names: tuple[str, ...] = ()
        # Activation names whose gradients the NumPy side reports (None: not known yet).
        self.retain: tuple[str, ...] | None = None
        self._param_maps = [(m.numpy_name, tuple(self.params[t] for t in m.torch_names), m.to_numpy)
                            for m in self.weight_maps]
        mapped = {t for m in self.weight_maps for t in m.torch_names}
        self.unmapped = [n for n in self.params if n not in mapped]

    def _load_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        with torch.no_grad():
            for m in self.weight_maps:
                if m.numpy_name not in weights:
                    raise KeyError(f"mapping names NumPy weight {m.numpy_name!r}, which init() does not return")
                arrays = m.to_torch(np.asarray(weights[m.numpy_name]))
                for name, array in zip(m.torch_names, arrays, strict=True):
                    param = self.params[name]
                    # reshape: ascontiguousarray makes a 0-d array 1-d, and a 0-d parameter is legitimate
                    contiguous = np.ascontiguousarray(array).reshape(np.shape(array))
                    value = torch.as_tensor(contiguous, dtype=self.dtype, device=self.device)
                    if value.shape != param.shape:
                        transposed = value.ndim == 2 and value.shape == param.shape[::-1]
                        raise ValueError(
                            f"mapping {m.numpy_name!r} -> {name!r}: init gives shape {tuple(value.shape)}, "
                            f"the model's parameter has {tuple(param.shape)}"
                            + ("; the transpose: is the layout TRANSPOSED?" if transposed else "")
                        )
                    param.copy_(value)

    def weights_numpy_layout(self) -> Tensors:
        """Current mapped weights, in the NumPy side's names and layout (torch dtype)."""
        return self._params_to_numpy(_detached)

    def to_torch_batch(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The batch as tensors on the run's device: integers as int64 (class labels, indices), booleans as
        they are, anything else in the run's dtype."""
        return {n: self._to_torch(np.asarray(a)) for n, a in batch.items()}

    def _to_torch(self, array: np.ndarray) -> torch.Tensor:
        kind = array.dtype.kind
        dtype = torch.int64 if kind in "iu" else (torch.bool if kind == "b" else self.dtype)
        return torch.as_tensor(array, device=self.device).to(dtype)

    def step(self, batch: Batch) -> Tensors:
        # The weights a step starts from are the ones the last step ended with: no second copy.
        before = self._last_after if self._last_after is not None else self._params_to_numpy(_detached, copy=True)
        out: Tensors = {keys.before(n): w for n, w in before.items()}
        if self._state_from_torch is not None:  # before the update changes it: the state this step starts from
            self.state_for_numpy = copy.deepcopy(dict(call(
                "torch", "state_from_torch", self._state_from_torch, self.model, self.optimizer, self.state, self.hp)))
        tbatch = self.to_torch_batch(batch)
        out.update({n: _np(t) for n, t in tbatch.items()})
        if self.fns.step is not None:
            self._whole_step(tbatch, out)
        else:
            self._pieces_step(tbatch, out)
        self._schedule()
        self._last_after = self._params_to_numpy(_detached, copy=True)
        out.update(updates(before, self._last_after))
        out.update({keys.after(n): w for n, w in self._last_after.items()})
        return out

    def _pieces_step(self, tbatch: dict[str, torch.Tensor], out: Tensors) -> None:
        acts = call("torch", "forward", self.fns.forward, self.model, tbatch, self.hp)
        self._check_activation_maps(acts)
        for name in self.retain or ():
            if name in acts and acts[name].requires_grad:
                acts[name].retain_grad()
        out.update(self._acts_to_numpy(acts))
        losses = _as_loss_dict(call("torch", "loss", self.fns.call_loss, acts, tbatch, self.hp, self.model))
        self.loss_names = tuple(losses)
        out.update({n: _np(v.detach()) if torch.is_tensor(v) else np.asarray(v) for n, v in losses.items()})
        call("torch", "backward", self.fns.backward, self.model, self.optimizer, losses["loss"], self.hp)
        # Copied: the update may zero or change the gradients in place.
        grads = self._params_to_numpy(_grad, copy=True)
        out.update({keys.grad(n): g for n, g in grads.items()})
        self._activation_grads(acts, out)
        call("torch", "update", self.fns.update, self.model, self.optimizer, self.state, self.hp)

    def _whole_step(self, tbatch: dict[str, torch.Tensor], out: Tensors) -> None:
        """The user's loop body, with each parameter's gradient recorded as its update reads it."""
        # Without an optimizer the update is a manual one: watch the step's writes into the parameters.
        watch = GradientWatch(self.params.values(), watch_writes=self.optimizer is None,
                              retain_activations=bool(self.retain))
        with watch:
            produced = call("torch", "step", self.fns.step, self.model, self.optimizer, tbatch, self.hp, self.state)
        parts = _read_step(produced, "torch", self.fns.step)
        named = {n: torch_value(v, self.dtype) for n, v in produced.items() if n in parts.values or n in parts.losses}
        self._check_activation_maps(named)
        self.loss_names = tuple(parts.losses)
        out.update(self._acts_to_numpy(named))
        # Not copied again: the watch's gradients are copies of their own, which nothing else holds.
        grads = self._params_to_numpy(watch.gradient)
        out.update({keys.grad(n): g for n, g in grads.items()})
        self._activation_grads(parts.values, out)
        for name, value in parts.grads.items():  # activation gradients the step took itself
            if name in self.params:
                raise _step_contract_error("torch", self.fns.step, f"'grad {name}': gradstep records the "
                                           "gradients of the model's parameters itself, as the update reads them")
            out[keys.grad(self._act_name(name))] = self._act_to_numpy(name, value)

    def _activation_grads(self, acts: Mapping[str, Any], out: Tensors) -> None:
        for name in self.retain or ():
            t = acts.get(name)
            if torch.is_tensor(t) and t.grad is not None:
                out[keys.grad(name)] = self._act_to_numpy(name, t.grad)

    def _schedule(self) -> None:
        """The scheduler's step, after every step's update or after an epoch's last one."""
        if self.scheduler is None:
            return
        last = getattr(self.hp, "steps_per_epoch", 1) - 1
        if self.fns.scheduler_every == "step" or getattr(self.hp, "index", 0) == last:
            call("torch", "scheduler", self.scheduler.step)

    def advance(self, batch: Batch) -> None:
        """One step with nothing recorded (see NumpyRunner.advance)."""
        tbatch = self.to_torch_batch(batch)
        if self.fns.step is not None:
            call("torch", "step", self.fns.step, self.model, self.optimizer, tbatch, self.hp, self.state)
        else:
            acts = call("torch", "forward", self.fns.forward, self.model, tbatch, self.hp)
            self._check_activation_maps(acts)
            losses = _as_loss_dict(call("torch", "loss", self.fns.call_loss, acts, tbatch, self.hp, self.model))
            call("torch", "backward", self.fns.backward, self.model, self.optimizer, losses["loss"], self.hp)
            call("torch", "update", self.fns.update, self.model, self.optimizer, self.state, self.hp)
        self._schedule()
        self._last_after = None

    def _check_activation_maps(self, acts: Mapping[str, Any]) -> None:
        """Once: every mapped torch name is a parameter or an activation the forward returns.

        Otherwise a misspelt name would map nothing and the pair would show up
        as two one-sided tensors, far from the line at fault.
        """
        if self._maps_checked:
            return
        missing = [m for name, m in self.act_maps.items() if name not in acts]
        if missing:
            m = missing[0]
            name = m.torch_names[0]
            known = [*self.params, *acts]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise mapping_error(KeyError(
                f"mapping {m.numpy_name!r} -> {name!r}: {name!r} is neither a parameter of the model "
                f"({', '.join(self.params) or 'none'}) nor an activation torch forward returns "
                f"({', '.join(acts) or 'none'}){hint}"), self._source_path)
        self._maps_checked = True

    def _params_to_numpy(self, get: Callable[[torch.Tensor], torch.Tensor | None], copy: bool = False) -> Tensors:
        """The mapped parameters (or what ``get`` takes of them) as NumPy-layout arrays.

        ``copy``: arrays of their own rather than views of torch's memory, which
        the next update overwrites. A NumPy copy costs a fraction of ``clone()``.
        The copies are C-contiguous in the NumPy side's layout (see ``_contiguous_copy``):
        left in torch's order, a transposed weight would cost the comparison a read
        across the rows for each of its before, grad, update and after pairs, and
        the local error's NumPy update a mixed-order pass, where here it costs one
        blocked transposition for each of grad and after.
        """
        out: Tensors = {}
        for name, params, to_numpy in self._param_maps:  # twice a step: kept lean
            if len(params) == 1:
                value = get(params[0])
                if value is None:
                    continue
                values = (value,)
            else:
                values = tuple(get(p) for p in params)
                if any(v is None for v in values):
                    continue
            arrays = [_np(v) for v in values]
            array = to_numpy(*arrays)
            out[name] = _owned(array, values, arrays) if copy else array
        for name in self.unmapped:
            value = get(self.params[name])
            if value is not None:
                array = _np(value)
                out[name] = _owned(array, (value,), (array,)) if copy else array
        return out

    def _acts_to_numpy(self, acts: Mapping[str, Any]) -> Tensors:
        return {self._act_name(n): self._act_to_numpy(n, t) for n, t in acts.items()}

    def _act_name(self, torch_name: str) -> str:
        m = self.act_maps.get(torch_name)
        return m.numpy_name if m else torch_name

    def _act_to_numpy(self, torch_name: str, t: Any) -> np.ndarray:
        value = _np(t.detach()) if torch.is_tensor(t) else np.asarray(t)
        m = self.act_maps.get(torch_name)
        return m.to_numpy(value) if m else value

    def metrics(self, data: Any) -> dict[str, float]:
        if self.fns.metrics is None:
            return {}
        with torch.no_grad():
            return dict(call("torch", "metrics", self.fns.metrics, self.model, data, self.hp))

    def snapshot(self) -> dict[str, Any]:
        return {
            "params": {n: p.detach().clone() for n, p in self.params.items()},
            "grads": {n: None if p.grad is None else p.grad.detach().clone() for n, p in self.params.items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()) if self.optimizer else None,
            "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler else None,
            "state": copy.deepcopy(self.state),
            "rng": torch.get_rng_state(),
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(snap["params"][n])
                g = snap["grads"][n]
                p.grad = None if g is None else g.clone()
        if self.optimizer is not None:
            self.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(copy.deepcopy(snap["scheduler"]))
        self.state = copy.deepcopy(snap["state"])
        torch.set_rng_state(snap["rng"])
        self._last_after = None
        self.state_for_numpy = None


def _detached(p: torch.Tensor) -> torch.Tensor:
    return p.detach()


def _read_step(produced: Any, side: str, fn: Callable[..., Any]) -> StepOutputs:
    try:
        return read_outputs(produced)
    except StepContractError as error:
        raise _step_contract_error(side, fn, str(error)) from None


def _step_contract_error(side: str, fn: Callable[..., Any], message: str) -> ScenarioError:
    """What a step function returned breaks the contract: located at its ``def`` (no frame of it is left)."""
    error = ScenarioError(side, "step", StepContractError(message))
    error.location = definition_site(fn)
    return error


def _grad(p: torch.Tensor) -> torch.Tensor | None:
    return None if p.grad is None else p.grad.detach()


def _owned(array: np.ndarray, tensors: tuple[torch.Tensor, ...], faces: list | tuple) -> np.ndarray:
    """``array`` (a layout's view of ``faces``, the NumPy faces of ``tensors``) with memory of its own,
    C-contiguous in the NumPy side's layout, as the comparison reads it best.

    Copied only where needed: a tensor off the CPU was copied over already, and a
    layout may have made a new array itself.
    """
    shared = any(t.device.type == "cpu" and np.may_share_memory(array, face)
                 for t, face in zip(tensors, faces, strict=True))
    if array.flags.c_contiguous and not shared:
        return array
    return _contiguous_copy(array)


def _contiguous_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy. A transposed view is copied by torch, in blocks: NumPy reads it across
    the rows, which at 1024 or 2048 columns costs 4 to 6 times as much (2048 x 2048 float32: 37 ms
    against 7.6; 1024 x 1024: 5.6 against 0.9; the same at 1024 x 784)."""
    if array.flags.c_contiguous or array.ndim < 2 or array.size < 65536:
        return array.copy()  # a straight copy, or too small for torch's call to pay
    try:
        return torch.from_numpy(array).contiguous().numpy()
    except (TypeError, ValueError, RuntimeError):  # a dtype or strides torch does not take (negative ones)
        return array.copy()


def _np(t: torch.Tensor) -> np.ndarray:
    # .numpy() shares memory on the CPU; elsewhere it raises, and only then do we copy over.
    try:
        return t.numpy()
    except TypeError:
        return t.cpu().numpy()


def _split_mapping(
    mapping: tuple[TensorMap, ...] | list[TensorMap], params: Mapping[str, torch.Tensor]
) -> tuple[list[_ParamMap], dict[str, _ParamMap]]:
    """Weights are maps whose torch names are all parameters; the rest map activations."""
    weights: list[_ParamMap] = []
    acts: dict[str, _ParamMap] = {}
    for m in mapping:
        pm = _ParamMap(m.numpy, m.torch_names, m.layout.to_numpy, m.layout.to_torch)
        missing = [t for t in m.torch_names if t not in params]
        if not missing:
            weights.append(pm)
        elif len(m.torch_names) == 1:
            acts[m.torch_names[0]] = pm
        else:
            raise KeyError(f"mapping {m.numpy!r}: torch names {missing} are not parameters of the model")
    return weights, acts

