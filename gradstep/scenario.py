"""The scenario contract: what a scenario file declares.

A scenario is one Python file that defines a module-level ``SCENARIO``, a
:class:`Scenario`. It holds the data, the shared initial weights, a NumPy side
and a torch side (each one step function, the loop body as the user wrote it,
or the same cut into pieces), the mapping between the two sides' tensor names
and layouts, and named variants (at least ``as-posted`` and ``fixed``) that
swap individual pieces.

Everything here is plain data and plain functions; the engine
(:mod:`gradstep.engine`) is what calls them, in this order, once per run::

    np.random.seed(seed); torch.manual_seed(seed)
    data = scenario.data(hp)           # may draw from np.random
    weights = scenario.init(hp)        # NumPy layout; may draw from np.random
    model = scenario.torch.model(hp)   # or model(hp, weights); with share_init, mapped parameters are overwritten
    optimizer = scenario.torch.optimizer(model, hp); scheduler = scenario.torch.scheduler(optimizer, hp)

and then once per step (one minibatch), with ``hp.step``, ``hp.epoch`` and
``hp.index`` set::

    out    = numpy.step(weights, batch, hp, state)           -> {"loss": ..., name: array, "grad NAME": array}
    # or
    acts   = numpy.forward(weights, batch, hp)               -> {name: array}
    losses = numpy.loss(acts, batch, hp[, weights])          -> scalar or {"loss": ..., other: ...}
    grads  = numpy.backward(weights, acts, batch, hp)        -> {name: array}
    new    = numpy.update(weights, grads, state, hp)         -> {name: array} or None (in place)

    out    = torch.step(model, optimizer, batch, hp, state)  -> {"loss": tensor, name: tensor}
    # or
    acts   = torch.forward(model, batch, hp)                 -> {name: tensor}
    losses = torch.loss(acts, batch, hp[, model])            -> tensor or {"loss": tensor, ...}
    torch.backward(model, optimizer, losses["loss"], hp)     (default: zero_grad + backward)
    torch.update(model, optimizer, state, hp)                (default: optimizer.step())
    scheduler.step()                                         (every step, or an epoch's last: scheduler_every)

This module must not import torch: loading and listing scenarios stays cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
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


SAMPLES = ("sequential", "shuffle", "replace")


class Minibatches:
    """Minibatches of named arrays, every array cut the same way.

    ``sample`` says which rows a step gets: ``"sequential"`` consecutive rows
    in order; ``"shuffle"`` consecutive rows of a permutation drawn anew every
    epoch; ``"replace"`` rows drawn with replacement for every step (the
    tutorials' ``np.random.choice(num_train, batch_size)``). The draws come from
    generators of their own, seeded by ``seed`` and the epoch (and, for
    ``"replace"``, the step's index), never from ``np.random``: any step's rows
    can be recomputed in any order.

    ``drop_last`` follows the threads' ``int(len(x) / batch_size)`` batches per
    epoch. ``shuffle_seed=S`` is the older spelling of ``sample="shuffle", seed=S``.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        sample: str | None = None,
        seed: int | None = None,
        shuffle_seed: int | None = None,
        drop_last: bool = True,
    ) -> None:
        lengths = {name: len(a) for name, a in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"Minibatches: arrays differ in length: {lengths}")
        if batch_size < 1:
            raise ValueError("Minibatches: batch_size must be at least 1")
        if shuffle_seed is not None:
            if sample not in (None, "shuffle") or seed is not None:
                raise ValueError("Minibatches: shuffle_seed=S means sample='shuffle', seed=S: give one or the other")
            sample, seed = "shuffle", shuffle_seed
        sample = sample or "sequential"
        if sample not in SAMPLES:
            raise ValueError(f"Minibatches: sample must be one of {', '.join(map(repr, SAMPLES))}, not {sample!r}")
        self.arrays = {name: np.asarray(a) for name, a in arrays.items()}
        self.size = next(iter(lengths.values()))
        self.batch_size = batch_size
        self.sample = sample
        self.seed = 0 if seed is None else int(seed)
        self.shuffle_seed = self.seed if sample == "shuffle" else None
        whole, rest = divmod(self.size, batch_size)
        self.steps_per_epoch = whole if (drop_last or rest == 0 or sample == "replace") else whole + 1
        if self.steps_per_epoch == 0:
            raise ValueError("Minibatches: fewer samples than one batch")
        self._order: tuple[int, np.ndarray] | None = None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            rng = np.random.RandomState(self.seed + epoch)
            self._order = (epoch, rng.permutation(self.size))
        return self._order[1]

    def rows(self, epoch: int, index: int) -> np.ndarray | slice:
        """The rows of the step at ``index`` of ``epoch`` (a slice when they are consecutive)."""
        start = index * self.batch_size
        stop = start + self.batch_size
        if self.sample == "sequential":
            return slice(start, stop)
        if self.sample == "shuffle":
            return self._epoch_order(epoch)[start:stop]
        # Its own generator per step: the rows of step (epoch, index) never depend on the steps before.
        rng = np.random.RandomState(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1))
        return rng.randint(0, self.size, size=self.batch_size)

    def batch(self, epoch: int, index: int) -> Batch:
        rows = self.rows(epoch, index)
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
    """The hand-written side: one step function, or four plain functions (see module docstring).

    ``step(weights, batch, hp, state) -> dict`` is the loop body as written:
    forward, loss, gradients and the update of ``weights`` in place, returning
    ``"loss"`` and whatever else to compare (activations by name, printed
    scalars, gradients as ``"grad NAME"``). Or the same cut into ``forward``,
    ``loss``, ``backward`` and ``update``.
    """

    forward: Callable[..., Mapping[str, Any]] | None = None
    loss: Callable[..., Any] | None = None
    backward: Callable[..., Mapping[str, Any]] | None = None
    update: Callable[..., Any] | None = None
    metrics: Callable[..., Mapping[str, float]] | None = None
    step: Callable[..., Mapping[str, Any]] | None = None

    def problems(self) -> list[str]:
        pieces = {"forward": self.forward, "loss": self.loss, "backward": self.backward, "update": self.update}
        given = [name for name, fn in pieces.items() if fn is not None]
        return _form_problems("numpy", self.step, given, list(pieces), "(weights, batch, hp, state)")

    def call_loss(self, acts: Any, batch: Batch, hp: Hyper, weights: Weights) -> Any:
        """``loss(acts, batch, hp)``, or ``loss(acts, batch, hp, weights)`` when it takes the weights (an L2 term)."""
        assert self.loss is not None
        if takes(self.loss, 4):
            return self.loss(acts, batch, hp, weights)
        return self.loss(acts, batch, hp)


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


SCHEDULER_EVERY = ("step", "epoch")


@dataclass(frozen=True)
class TorchSide:
    """The PyTorch side, written the way the thread writes it.

    ``model(hp)`` builds the ``nn.Module`` (``model(hp, weights)`` is given the
    initial weights too, for code that loads them itself). Then either
    ``step(model, optimizer, batch, hp, state) -> dict``, the loop body exactly
    as written (``zero_grad()`` or not, ``optimizer.step()`` or a manual
    update), returning ``"loss"`` and the activations to compare; or the
    pieces: ``forward(model, batch, hp)`` returns its named activations as an
    explicit dict (the output included); ``loss(acts, batch, hp)`` (or
    ``loss(acts, batch, hp, model)``) returns the tensor ``backward`` runs on,
    or a dict whose ``"loss"`` is that tensor and whose other entries are
    reported values. ``batch`` holds torch tensors on the run's device: floats
    in the run's dtype, integers as ``torch.int64``.

    ``scheduler(optimizer, hp)`` makes a learning-rate scheduler that gradstep
    steps after every step's update (``scheduler_every="step"``) or after an
    epoch's last step (``"epoch"``).
    """

    model: Callable[..., Any]
    forward: Callable[..., Mapping[str, Any]] | None = None
    loss: Callable[..., Any] | None = None
    optimizer: Callable[..., Any] | None = None
    backward: Callable[..., None] = default_torch_backward
    update: Callable[..., None] = default_torch_update
    metrics: Callable[..., Mapping[str, float]] | None = None
    step: Callable[..., Mapping[str, Any]] | None = None
    scheduler: Callable[..., Any] | None = None
    scheduler_every: str = "step"

    def problems(self) -> list[str]:
        given = [name for name in ("forward", "loss") if getattr(self, name) is not None]
        given += [name for name, fn, default in (("backward", self.backward, default_torch_backward),
                                                 ("update", self.update, default_torch_update)) if fn is not default]
        out = _form_problems("torch", self.step, given, ["forward", "loss"], "(model, optimizer, batch, hp, state)")
        if not callable(self.model):
            out.append("torch model must be a function of the hyper-parameters that returns an nn.Module")
        if self.scheduler is not None and self.optimizer is None:
            out.append("torch scheduler needs an optimizer: scheduler(optimizer, hp) makes it from one")
        if self.scheduler_every not in SCHEDULER_EVERY:
            out.append(f"torch scheduler_every must be 'step' or 'epoch', not {self.scheduler_every!r}")
        return out

    def call_loss(self, acts: Any, batch: Any, hp: Hyper, model: Any) -> Any:
        """``loss(acts, batch, hp)``, or ``loss(acts, batch, hp, model)`` when it takes the model (an L2 term)."""
        assert self.loss is not None
        if takes(self.loss, 4):
            return self.loss(acts, batch, hp, model)
        return self.loss(acts, batch, hp)

    def build_model(self, hp: Hyper, weights: Weights) -> Any:
        """``model(hp)``, or ``model(hp, weights)`` when it takes the initial weights (copies: it may change them)."""
        if takes(self.model, 2):
            return self.model(hp, {n: np.array(w, copy=True) for n, w in weights.items()})
        return self.model(hp)


def _form_problems(side: str, step: Any, pieces_given: list[str], pieces_needed: list[str],
                   arguments: str) -> list[str]:
    """A side is one step function or its pieces, never both, never neither."""
    if step is not None:
        if not callable(step):
            return [f"{side} step must be a function {arguments}"]
        if not takes(step, arguments.count(",") + 1):
            return [f"{side} step {_where(step)}takes other arguments than {arguments}"]
        if pieces_given:
            return [f"{side} has a step function and pieces too ({', '.join(pieces_given)}): the step is the whole "
                    "loop body, so give one or the other"]
        return []
    missing = [name for name in pieces_needed if name not in pieces_given]
    if missing:
        return [f"{side} needs a step function (step=...) or its pieces; {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing"]
    return []


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    name = getattr(fn, "__name__", "")
    return f"{name} ({code.co_filename}:{code.co_firstlineno}) " if code is not None else f"{name} "


@functools.lru_cache(maxsize=256)  # asked every step of a run: inspect.signature costs ~20 µs a call
def takes(fn: Callable[..., Any], count: int) -> bool:
    """Whether ``fn`` can be called with ``count`` positional arguments (how optional arguments are offered)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: call it the plain way
        return False
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def set_position(hp: Hyper, step: int, steps_per_epoch: int) -> tuple[int, int]:
    """Set ``hp.step``, ``hp.epoch`` and ``hp.index`` for a call at ``step``; return (epoch, index)."""
    epoch, index = divmod(step, steps_per_epoch)
    hp.step, hp.epoch, hp.index = step, epoch, index
    return epoch, index


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
    # Tolerances, elementwise, as --rtol/--atol (which override them): for the whole run, and per
    # tensor by name ("grad W1", or "W1" for every pair of that weight). None: the dtype's defaults.
    rtol: float | None = None
    atol: float | None = None
    tolerances: Mapping[str, tuple[float, float]] = field(default_factory=dict)
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
