"""A side written as one step function: the user's loop body as written, and what gradstep reads from it.

A step function returns a dict of what it computed: ``"loss"`` and any other
scalar it prints (the loss phase), activations by name, and gradients as
``"grad NAME"``. :func:`read_outputs` sorts that dict and says clearly what is
wrong with it.

On the torch side gradstep never asks the step for its parameters' gradients:
:class:`GradientWatch` records each one *as the update reads it*, which is
what keeps a forgotten ``zero_grad()`` (or an update made before
``backward()``) visible:

- an optimizer's ``step()`` reads ``.grad``: a global optimizer step pre-hook
  records the gradients of its parameters at that moment, after any clipping
  or hand-made change to ``.grad``;
- a manual update writes into the parameter in place (``p -= lr * p.grad``,
  ``p.data.add_(...)``, ``p.copy_(...)``): on a side without an optimizer, a
  torch function mode records the parameter's ``.grad`` just before the first
  such write in the step (it sees every operation, so it is only on where it is
  needed: some 10 µs an operation);
- otherwise (``p.data = p.data - lr * p.grad``, which is no in-place write),
  the gradient as the last ``backward()`` of the step left it, from a
  post-accumulate-grad hook: with no ``zero_grad()`` that is the running sum.

Limits: on a side with an optimizer, a parameter the step updates by hand
has its gradient as backward left it; a manual update that reads a gradient it
computed itself (``torch.autograd.grad``) rather than ``.grad`` has no
gradient recorded (return it as ``"grad NAME"`` under an activation's name to
compare it); an optimizer whose ``step(closure)`` runs the backward inside the
closure has the gradients recorded as they stood before the closure ran; a
write into part of a parameter that starts past its first element
(``p[1:] -= ...``) is not seen as its update.

Activation gradients the NumPy side reports are recorded too: while the
torch step runs, every intermediate tensor that requires a gradient has
``retain_grad()`` called on it (only when the NumPy side reports any: it
keeps one more tensor per operation alive until the step ends, and costs the
function mode's time per operation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.overrides import TorchFunctionMode

from gradstep import keys


class StepContractError(ValueError):
    """What a step function returned is not what gradstep can read."""


@dataclass(frozen=True)
class StepOutputs:
    """A step function's dict, sorted: loss-phase scalars, activations, and gradients by the name they are of."""

    losses: dict[str, Any]
    values: dict[str, Any]
    grads: dict[str, Any]
    produced: Mapping[str, Any]


def read_outputs(produced: Any) -> StepOutputs:
    """Sort what a step returned; raise :class:`StepContractError` saying what is wrong with it."""
    if not isinstance(produced, Mapping):
        got = "nothing (None)" if produced is None else f"a {type(produced).__name__}"
        raise StepContractError(f"a step function returns a dict ({{'loss': ..., name: value}}), not {got}")
    losses, values, grads = {}, {}, {}
    for name, value in produced.items():
        if not isinstance(name, str):
            raise StepContractError(f"the names a step returns are strings, not {name!r}")
        head, _, rest = name.partition(" ")
        if head in keys.RECORDED_HEADS and rest:
            raise StepContractError(f"{name!r}: gradstep records the weights before and after the step, and the "
                                    "update between them, itself")
        if head == "grad" and rest:
            grads[rest] = value
        elif name == "loss" or _is_scalar(value):
            losses[name] = value
        else:
            values[name] = value
    if "loss" not in losses:
        raise StepContractError(f"the dict a step returns needs a 'loss' entry; it has {', '.join(map(repr, produced))}"
                                if produced else "the dict a step returns needs a 'loss' entry; it is empty")
    return StepOutputs(losses, values, grads, produced)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, (int, float, np.generic)):
        return True
    return (torch.is_tensor(value) or isinstance(value, np.ndarray)) and value.ndim == 0


def definition_site(fn: Callable[..., Any]) -> str:
    """``file:line`` of the ``def`` of ``fn``, where a contract error about what it returned points."""
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else ""


def numpy_outputs(parts: StepOutputs) -> dict[str, np.ndarray]:
    """A NumPy step's dict as the record's entries: its names are already the record's keys."""
    return {name: np.asarray(value) for name, value in parts.produced.items()}  # in the order it returned them


# ---- torch: gradients as the update reads them ---------------------------------------------


_INPLACE_DUNDERS = frozenset({"__iadd__", "__isub__", "__imul__", "__itruediv__", "__idiv__", "__ipow__",
                              "__setitem__"})


def _writes_in_place(func: Any, cache: dict[Any, bool] = {}) -> bool:  # noqa: B006 - a deliberate memo
    """``add_``, ``copy_``, ``__isub__``...: an operation that writes into its first argument."""
    known = cache.get(func)
    if known is None:
        name = getattr(func, "__name__", "")
        known = cache[func] = (name.endswith("_") and not name.startswith("_")) or name in _INPLACE_DUNDERS
    return known


class GradientWatch:
    """While a torch step runs: each parameter's gradient as its update reads it (see the module docstring)."""

    def __init__(self, params: Iterable[torch.Tensor], *, watch_writes: bool, retain_activations: bool = False):
        """``watch_writes``: see the step's in-place writes into parameters (a manual update)."""
        self.params = [p for p in params if p.requires_grad]
        self.watch_writes = watch_writes
        self.retain_activations = retain_activations
        self.read: dict[int, torch.Tensor] = {}  # at an optimizer step or the first in-place write
        self.accumulated: dict[int, torch.Tensor] = {}  # after the step's last backward
        self._handles: list[Any] = []
        self._mode: _WatchMode | None = None

    def gradient(self, param: torch.Tensor) -> torch.Tensor | None:
        """The gradient recorded for ``param`` in the step (a detached copy), or None."""
        key = id(param)
        return self.read.get(key, self.accumulated.get(key))

    def __enter__(self) -> GradientWatch:
        ours = {id(p) for p in self.params}

        def accumulated(param: torch.Tensor) -> None:
            self.accumulated[id(param)] = param.grad.detach().clone()

        def before_update(optimizer: Any, args: Any, kwargs: Any) -> None:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if id(param) in ours and param.grad is not None:
                        self.read[id(param)] = param.grad.detach().clone()

        self._handles = [p.register_post_accumulate_grad_hook(accumulated) for p in self.params]
        self._handles.append(register_optimizer_step_pre_hook(before_update))
        if self.watch_writes or self.retain_activations:
            self._mode = _WatchMode(self, {p.data_ptr(): p for p in self.params} if self.watch_writes else {})
            self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._mode is not None:
            self._mode.__exit__(*exc)
            self._mode = None
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def before_write(self, target: Any, by_address: Mapping[int, torch.Tensor]) -> None:
        if not torch.is_tensor(target):
            return
        param = by_address.get(target.data_ptr())
        if param is not None and id(param) not in self.read and param.grad is not None:
            self.read[id(param)] = param.grad.detach().clone()


class _WatchMode(TorchFunctionMode):
    """Sees every torch operation of the step: in-place writes into parameters, and outputs to retain."""

    def __init__(self, watch: GradientWatch, by_address: Mapping[int, torch.Tensor]):
        super().__init__()
        self.watch, self.by_address = watch, by_address

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if self.by_address and args and _writes_in_place(func):
            self.watch.before_write(args[0], self.by_address)
        out = func(*args, **(kwargs or {}))
        if self.watch.retain_activations:
            _retain(out)
        return out


def _retain(out: Any) -> None:
    if torch.is_tensor(out):
        if out.requires_grad and not out.is_leaf:
            out.retain_grad()
    elif isinstance(out, (tuple, list)):
        for item in out:
            _retain(item)


def torch_value(value: Any, dtype: torch.dtype) -> Any:
    """A Python float a torch step returns (``loss.item()``) in the run's dtype, so it compares at that precision."""
    if isinstance(value, float):
        return torch.tensor(value, dtype=dtype)
    return value
