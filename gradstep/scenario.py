"""The scenario contract: what a scenario file declares.

A scenario is one Python file that defines a module-level ``SCENARIO``, a
:class:`Scenario`. It holds the data, the shared initial weights, a NumPy side
made of plain functions, a torch side built around an ``nn.Module``, the
mapping between the two sides' tensor names and layouts, and named variants
(at least ``as-posted`` and ``fixed``) that swap individual pieces.

Everything here is plain data and plain functions; the engine
(:mod:`gradstep.engine`) is what calls them, in this order, once per run::

    np.random.seed(seed); torch.manual_seed(seed)
    data = scenario.data(hp)           # may draw from np.random
    weights = scenario.init(hp)        # NumPy layout; may draw from np.random
    model = scenario.torch.model(hp)   # mapped parameters are then overwritten

and then once per step (one minibatch)::

    acts   = numpy.forward(weights, batch, hp)           -> {name: array}
    losses = numpy.loss(acts, batch, hp)                 -> scalar or {"loss": ..., other: ...}
    grads  = numpy.backward(weights, acts, batch, hp)    -> {name: array}
    new    = numpy.update(weights, grads, state, hp)     -> {name: array} or None (in place)

    acts   = torch.forward(model, batch, hp)             -> {name: tensor}
    losses = torch.loss(acts, batch, hp)                 -> tensor or {"loss": tensor, ...}
    torch.backward(model, optimizer, losses["loss"], hp) (default: zero_grad + backward)
    torch.update(model, optimizer, state, hp)            (default: optimizer.step())

This module must not import torch: loading and listing scenarios stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

Batch = Mapping[str, np.ndarray]
Weights = dict[str, np.ndarray]
Hyper = SimpleNamespace

DTYPES = ("float32", "float64")


class Data(Protocol):
    """A deterministic sequence of minibatches, indexable by (epoch, index)."""

    steps_per_epoch: int

    def batch(self, epoch: int, index: int) -> Batch:
        """The minibatch at ``index`` of ``epoch``; the same every time it is asked."""
        ...


class Minibatches:
    """Consecutive minibatches of named arrays, optionally reshuffled every epoch.

    ``drop_last`` follows the threads' ``int(len(x) / batch_size)`` batches per
    epoch. A shuffle draws from its own ``np.random.RandomState(seed + epoch)``,
    so any epoch can be recomputed in any order.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        shuffle_seed: int | None = None,
        drop_last: bool = True,
    ) -> None:
        lengths = {name: len(a) for name, a in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"Minibatches: arrays differ in length: {lengths}")
        if batch_size < 1:
            raise ValueError("Minibatches: batch_size must be at least 1")
        self.arrays = {name: np.asarray(a) for name, a in arrays.items()}
        self.size = next(iter(lengths.values()))
        self.batch_size = batch_size
        self.shuffle_seed = shuffle_seed
        whole, rest = divmod(self.size, batch_size)
        self.steps_per_epoch = whole if (drop_last or rest == 0) else whole + 1
        if self.steps_per_epoch == 0:
            raise ValueError("Minibatches: fewer samples than one batch")
        self._order: tuple[int, np.ndarray] | None = None

    def _epoch_order(self, epoch: int) -> np.ndarray | None:
        if self.shuffle_seed is None:
            return None
        if self._order is None or self._order[0] != epoch:
            rng = np.random.RandomState(self.shuffle_seed + epoch)
            self._order = (epoch, rng.permutation(self.size))
        return self._order[1]

    def batch(self, epoch: int, index: int) -> Batch:
        start = index * self.batch_size
        stop = start + self.batch_size
        order = self._epoch_order(epoch)
        if order is None:
            return {name: a[start:stop] for name, a in self.arrays.items()}
        rows = order[start:stop]
        return {name: a[rows] for name, a in self.arrays.items()}


@dataclass(frozen=True)
class Layout:
    """How one NumPy-side tensor corresponds to one or more torch tensors.

    ``to_torch`` turns the NumPy array into the torch tensors' arrays (a tuple,
    one per torch name); ``to_numpy`` turns the torch tensors' arrays (NumPy
    arrays, in torch layout) back into the NumPy side's layout.
    """

    name: str
    to_torch: Callable[[np.ndarray], tuple[np.ndarray, ...]]
    to_numpy: Callable[..., np.ndarray]


SAME = Layout("same", lambda a: (a,), lambda t: t)
TRANSPOSED = Layout("transposed", lambda a: (a.T,), lambda t: t.T)


def reshaped(numpy_shape: tuple[int, ...], torch_shape: tuple[int, ...]) -> Layout:
    """Same elements in the same order, different shape (e.g. (1, 1) and (1,))."""
    return Layout(
        f"reshaped {torch_shape}->{numpy_shape}",
        lambda a: (np.reshape(a, torch_shape),),
        lambda t: np.reshape(t, numpy_shape),
    )


def bias_first(numpy_shape: tuple[int, ...] = (-1,)) -> Layout:
    """NumPy ``W = [b, w...]`` against torch ``(bias, weight)`` of an nn.Linear."""

    def to_torch(a: np.ndarray) -> tuple[np.ndarray, ...]:
        flat = np.reshape(a, -1)
        return flat[:1], flat[None, 1:]

    def to_numpy(bias: np.ndarray, weight: np.ndarray) -> np.ndarray:
        flat = np.concatenate([np.reshape(bias, -1), np.reshape(weight, -1)])
        return np.reshape(flat, numpy_shape)

    return Layout("bias first", to_torch, to_numpy)


@dataclass(frozen=True)
class TensorMap:
    """A NumPy-side name and its torch-side name(s), with the layout between them.

    Maps weights (and so their gradients) to ``nn.Module`` parameter names, and
    activations to the names the torch forward returns when they differ or
    need a layout. Anything left unmapped is matched by equal name, and what
    exists on one side only is reported as such.
    """

    numpy: str
    torch: str | tuple[str, ...]
    layout: Layout = SAME

    @property
    def torch_names(self) -> tuple[str, ...]:
        return (self.torch,) if isinstance(self.torch, str) else tuple(self.torch)


@dataclass(frozen=True)
class NumpySide:
    """The hand-written side, as separate plain functions (see module docstring)."""

    forward: Callable[..., Mapping[str, Any]]
    loss: Callable[..., Any]
    backward: Callable[..., Mapping[str, Any]]
    update: Callable[..., Any]
    metrics: Callable[..., Mapping[str, float]] | None = None


def default_torch_backward(model: Any, optimizer: Any, loss: Any, hp: Hyper) -> None:
    """``optimizer.zero_grad(); loss.backward()``, the usual order."""
    if optimizer is not None:
        optimizer.zero_grad()
    loss.backward()


def default_torch_update(model: Any, optimizer: Any, state: dict, hp: Hyper) -> None:
    """``optimizer.step()``; scenarios with a manual update pass their own."""
    if optimizer is None:
        raise ValueError("torch side has neither an optimizer nor an update function")
    optimizer.step()


@dataclass(frozen=True)
class TorchSide:
    """The PyTorch side, written the way the thread writes it.

    ``model(hp)`` builds the ``nn.Module``; ``forward(model, batch, hp)``
    returns its named activations as an explicit dict (the output included);
    ``loss(acts, batch, hp)`` returns the tensor ``backward`` runs on, or a
    dict whose ``"loss"`` is that tensor and whose other entries are reported
    values. ``batch`` holds torch tensors in the run's dtype and device.
    """

    model: Callable[..., Any]
    forward: Callable[..., Mapping[str, Any]]
    loss: Callable[..., Any]
    optimizer: Callable[..., Any] | None = None
    backward: Callable[..., None] = default_torch_backward
    update: Callable[..., None] = default_torch_update
    metrics: Callable[..., Mapping[str, float]] | None = None


@dataclass(frozen=True)
class Variant:
    """A named change to the scenario.

    ``replace`` keys are dotted paths: ``"numpy.backward"``, ``"torch.loss"``,
    ``"init"``, ``"hyper.lr"``, ``"dtype"``... and values replace what is there.
    """

    summary: str
    replace: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """Everything gradstep needs to run the two sides in lockstep."""

    name: str
    summary: str
    dtype: str
    seed: int
    epochs: int
    hyper: Mapping[str, Any]
    data: Callable[[Hyper], Data]
    init: Callable[[Hyper], Weights]
    numpy: NumpySide
    torch: TorchSide
    mapping: Sequence[TensorMap] = ()
    variants: Mapping[str, Variant] = field(default_factory=dict)
    default_variant: str = "as-posted"
    # False: the torch side keeps its model's own initialisation instead of
    # the shared init (on purpose, as a thread did); mapped names still compare.
    share_init: bool = True
    # Optional: torch's optimizer state at the start of a step as the NumPy update's ``state`` dict,
    # state_from_torch(model, optimizer, torch_state, hp) -> dict (momentum buffers, Adam moments, in NumPy's
    # names and layout), so the local re-run starts from torch's state as it starts from torch's weights.
    state_from_torch: Callable[..., dict] | None = None
    notes: str = ""
    # Filled in by the loader: the file it came from and the variant in force.
    source_path: str = ""
    variant: str = ""

    def hp(self) -> Hyper:
        return SimpleNamespace(**dict(self.hyper))

    def with_variant(self, name: str | None) -> Scenario:
        """This scenario with variant ``name`` (or the default) applied."""
        name = name or self.default_variant
        if name not in self.variants:
            known = ", ".join(self.variants) or "none"
            raise KeyError(f"scenario {self.name!r} has no variant {name!r} (variants: {known})")
        resolved = self
        for path, value in self.variants[name].replace.items():
            resolved = _replace_path(resolved, path, value)
        return dataclasses.replace(resolved, variant=name)


def _replace_path(scenario: Scenario, path: str, value: Any) -> Scenario:
    head, _, rest = path.partition(".")
    if head == "hyper" and rest:
        return dataclasses.replace(scenario, hyper={**scenario.hyper, rest: value})
    if head in ("numpy", "torch") and rest:
        side = getattr(scenario, head)
        if rest not in {f.name for f in dataclasses.fields(side)}:
            raise KeyError(f"variant replaces unknown field {path!r}")
        return dataclasses.replace(scenario, **{head: dataclasses.replace(side, **{rest: value})})
    if not rest and head in {f.name for f in dataclasses.fields(scenario)}:
        return dataclasses.replace(scenario, **{head: value})
    raise KeyError(f"variant replaces unknown field {path!r}")
