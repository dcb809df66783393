"""Float64 re-runs of one step, outside the run: the referee and the finite-difference checks.

A :class:`TorchReplica` is a fresh copy of the torch side in float64 on the CPU,
loaded with the weights one side had at the start of a step; a
:class:`NumpyReplica` calls the NumPy side's functions on float64 copies. Both
leave the run's random generators as they were.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from gradstep import keys
from gradstep.engine import Engine, rng_preserved
from gradstep.scenario import set_position
from gradstep.sides import TorchRunner
from gradstep.trace import StepRecord


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Replicas are small: one torch thread avoids thread hand-offs that cost more than the arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class RandomGuard:
    """Gives the random generators back after each call, as ``rng_preserved`` does, but only while the calls
    draw from them: learnt on the first call (a finite-difference check makes hundreds of calls, most scenarios
    draw nothing, and saving the generators costs more than a small forward pass)."""

    def __init__(self) -> None:
        self.draws: bool | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.draws is False:
            yield
            return
        np_state, torch_state = np.random.get_state(), torch.get_rng_state()
        try:
            yield
        finally:
            if self.draws is None:
                after = np.random.get_state()
                self.draws = (np_state[2] != after[2] or not np.array_equal(np_state[1], after[1])
                              or not torch.equal(torch_state, torch.get_rng_state()))
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)


def hyper_for(engine: Engine, dtype: torch.dtype = torch.float64, step: int | None = None) -> Any:
    """The run's hyper-parameters for a replica on the CPU in ``dtype``, as of ``step`` (hp.step, epoch, index)."""
    hp = copy.copy(engine.live.hp)
    hp.torch_dtype, hp.device = dtype, "cpu"
    if step is not None:
        set_position(hp, step, engine.steps_per_epoch)
    return hp


def loss_dict(value: Any) -> dict[str, Any]:
    """A scenario loss as a dict with a ``"loss"`` entry (a bare value is that entry)."""
    return dict(value) if isinstance(value, Mapping) else {"loss": value}


def scalar_loss(value: Any) -> float:
    """The objective as one float: the ``"loss"`` entry, summed if it is not a scalar."""
    loss = loss_dict(value)["loss"]
    if torch.is_tensor(loss):
        return float(loss.detach().double().sum())
    return float(np.sum(np.asarray(loss, dtype=np.float64)))


def batch_float64(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float arrays in float64; integer arrays (labels, indices) stay as they are."""
    return {n: (np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a))
            for n, a in batch.items()}


class TorchReplica:
    """The torch side in float64 from the weights ``side`` had at the start of ``record``'s step."""

    def __init__(self, engine: Engine, record: StepRecord, side: str = "torch"):
        self.engine = engine
        self.record = record
        self.hp = hyper_for(engine, step=record.step)
        source = getattr(record, side)
        scenario = dataclasses.replace(engine.scenario, share_init=True) if _has_share_init(engine) else engine.scenario
        start = {m.numpy: np.asarray(source[keys.before(m.numpy)], dtype=np.float64)
                 for m in engine.scenario.mapping if keys.before(m.numpy) in source}
        with rng_preserved():
            self.runner = TorchRunner(scenario, self.hp, start, "cpu", torch.float64)
        self.maps = {m.numpy_name: m for m in self.runner.weight_maps}
        self._load_unmapped(source)
        self.batch = engine.live.data.batch(record.epoch, record.index)
        self.tbatch = self.runner.to_torch_batch(self.batch)
        self._guard = RandomGuard()

    def _load_unmapped(self, source: Mapping[str, np.ndarray]) -> None:
        with torch.no_grad():
            for name in self.runner.unmapped:
                value = source.get(keys.before(name))
                if value is not None:
                    self.runner.params[name].copy_(torch.as_tensor(np.asarray(value, dtype=np.float64)))

    @property
    def weight_names(self) -> list[str]:
        return [*self.maps, *self.runner.unmapped]

    def weight(self, name: str) -> np.ndarray:
        """The weight ``name`` in the NumPy side's layout (torch names for unmapped parameters)."""
        with torch.no_grad():
            if name in self.maps:
                m = self.maps[name]
                # A copy: SAME and TRANSPOSED layouts of a float64 parameter would return a view of it,
                # and a finite-difference check that restores "the start" would restore its own perturbation.
                arrays = [self.runner.params[t].numpy() for t in m.torch_names]
                return np.array(m.to_numpy(*arrays), dtype=np.float64, copy=True)
            return self.runner.params[name].detach().numpy().copy()

    def set_weight(self, name: str, value: np.ndarray) -> None:
        with torch.no_grad():
            if name in self.maps:
                m = self.maps[name]
                for t, piece in zip(m.torch_names, m.to_torch(np.asarray(value)), strict=True):
                    param = self.runner.params[t]
                    param.copy_(torch.as_tensor(np.ascontiguousarray(piece), dtype=torch.float64).reshape(param.shape))
            else:
                self.runner.params[name].copy_(torch.as_tensor(np.asarray(value, dtype=np.float64)))

    def element_setter(self, name: str) -> Callable[[int, float], float]:
        """``set(j, value) -> old``: element ``j`` of weight ``name`` (flat, NumPy layout) set in the torch
        parameter it maps to, in place. The layout is applied once to the elements' indices to find where each
        one lives, so a finite-difference step never copies a big weight."""
        owner = position = None
        if name in self.maps:
            m = self.maps[name]
            shape = self.weight(name).shape
            size = int(np.prod(shape))
            where = m.to_torch(np.arange(size).reshape(shape))
            owner, position = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
            for i, indices in enumerate(where):
                flat = np.asarray(indices).reshape(-1)
                owner[flat], position[flat] = i, np.arange(flat.size)

        def set_element(j: int, value: float) -> float:
            if owner is None:
                torch_name, k = name, j
            else:
                torch_name, k = self.maps[name].torch_names[int(owner[j])], int(position[j])
            with torch.no_grad():
                flat = self.runner.params[torch_name].view(-1)
                old = float(flat[k])
                flat[k] = value
            return old

        return set_element

    def loss(self) -> float:
        """torch.forward + torch.loss at the current weights, in float64 (or the loss torch.step returns)."""
        fns = self.runner.fns
        if fns.step is not None:
            return scalar_loss(self._whole_step()["loss"])
        with torch.no_grad(), self._guard():
            acts = fns.forward(self.runner.model, self.tbatch, self.hp)
            return scalar_loss(fns.call_loss(acts, self.tbatch, self.hp, self.runner.model))

    def _whole_step(self) -> dict[str, np.ndarray]:
        """torch.step from the current weights with no gradient left over, everything put back after."""
        snapshot = self.runner.snapshot()
        for p in self.runner.params.values():
            p.grad = None
        try:
            with rng_preserved():
                return self.runner.step(self.batch)
        finally:
            self.runner.restore(snapshot)

    def step_outputs(self) -> dict[str, np.ndarray]:
        """Forward, loss and fresh autograd gradients (no update), in the NumPy side's names and layout.

        For a step function: what it returns and the gradients its update reads, run with no gradient
        left over from before (the update it makes is undone)."""
        if self.runner.fns.step is not None:
            out = self._whole_step()
            return {k: v for k, v in out.items() if not k.startswith(("before ", "after ")) and k not in self.batch}
        for p in self.runner.params.values():
            p.grad = None
        fns = self.runner.fns
        with rng_preserved():
            acts = fns.forward(self.runner.model, self.tbatch, self.hp)
            out = self._acts_to_numpy(acts)
            losses = loss_dict(fns.call_loss(acts, self.tbatch, self.hp, self.runner.model))
            out.update({n: _array(v) for n, v in losses.items()})
            losses["loss"].backward()
        for name in self.weight_names:
            grad = self._grad(name)
            if grad is not None:
                out[keys.grad(name)] = grad
        return out

    def _acts_to_numpy(self, acts: Mapping[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for name, value in acts.items():
            array = value.detach().numpy().copy() if torch.is_tensor(value) else np.asarray(value)
            m = self.runner.act_maps.get(name)
            out[m.numpy_name if m else name] = m.to_numpy(array) if m else array
        return out

    def _grad(self, name: str) -> np.ndarray | None:
        if name in self.maps:
            m = self.maps[name]
            grads = [self.runner.params[t].grad for t in m.torch_names]
            if any(g is None for g in grads):
                return None
            return np.asarray(m.to_numpy(*[g.numpy().copy() for g in grads]), dtype=np.float64)
        g = self.runner.params[name].grad
        return None if g is None else g.numpy().copy()


class NumpyReplica:
    """The NumPy side's forward, loss and backward in float64 from the given weights."""

    def __init__(self, engine: Engine, record: StepRecord, weights: Mapping[str, np.ndarray]):
        self.fns = engine.scenario.numpy
        self.hp = hyper_for(engine, step=record.step)
        self.weights = {n: np.array(w, dtype=np.float64) for n, w in weights.items()}
        self.batch = batch_float64(engine.live.data.batch(record.epoch, record.index))
        self.state = copy.deepcopy(engine.live.numpy.state)  # a step function's update may need it

        self._guard = RandomGuard()

    def loss(self, weights: Mapping[str, np.ndarray] | None = None) -> float:
        w = self.weights if weights is None else weights
        if self.fns.step is not None:
            return scalar_loss(self._whole_step(w))
        with self._guard():
            acts = self.fns.forward(w, self.batch, self.hp)
            return scalar_loss(self.fns.call_loss(acts, self.batch, self.hp, w))

    def _whole_step(self, weights: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """numpy.step on copies of ``weights`` (its update changes only them) and of the state."""
        with rng_preserved():
            produced = self.fns.step({n: w.copy() for n, w in weights.items()}, self.batch, self.hp,
                                     copy.deepcopy(self.state))
        return dict(produced)

    def step_outputs(self) -> dict[str, np.ndarray]:
        if self.fns.step is not None:
            return {n: np.asarray(v) for n, v in self._whole_step(self.weights).items()}
        with rng_preserved():
            weights = {n: w.copy() for n, w in self.weights.items()}
            acts = dict(self.fns.forward(weights, self.batch, self.hp))
            out = {n: np.asarray(v) for n, v in acts.items()}
            losses = loss_dict(self.fns.call_loss(acts, self.batch, self.hp, weights))
            out.update({n: np.asarray(v) for n, v in losses.items()})
            grads = self.fns.backward(weights, acts, self.batch, self.hp)
            out.update({keys.grad(n): np.asarray(g) for n, g in grads.items()})
        return out


def _array(value: Any) -> np.ndarray:
    return value.detach().numpy().copy() if torch.is_tensor(value) else np.asarray(value)


def _has_share_init(engine: Engine) -> bool:
    return any(f.name == "share_init" for f in dataclasses.fields(engine.scenario))
