"""Engine-backed look-ups the rules share, computed once per diagnosis and only when asked.

Everything goes through the engine's public surface after a run: records
(from the window, or recomputed from a checkpoint), the trace, the scenario;
float64 replicas run outside the run and leave its random generators alone.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from gradstep import keys
from gradstep.diagnosis.budget import Budget
from gradstep.diagnosis.gradcheck import GradCheck, gradcheck
from gradstep.diagnosis.replica import NumpyReplica, TorchReplica
from gradstep.diagnosis.view import StepView, view_of
from gradstep.engine import Engine
from gradstep.scenario import default_torch_backward, default_torch_update
from gradstep.trace import StepRecord, keep_within


class Probe:
    """Lazy, cached facts about one engine's run."""

    def __init__(self, engine: Engine, budget: Budget | None = None):
        self.engine = engine
        self.scenario = engine.scenario
        self.budget = budget or Budget()
        self._cache: dict[tuple, Any] = {}
        self._records: OrderedDict[int, StepRecord] = OrderedDict()

    @property
    def steps_run(self) -> int:
        return self.engine.next_step

    def _cached(self, key: tuple, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def record(self, step: int) -> StepRecord:
        """The step's full record, kept at hand within the trace's budget: the update fits read up to 64 steps
        several times over (all kept for a small model), but must not hold them all when each is the size of
        several copies of a big model."""
        record = self._records.pop(step, None) or self.engine.record(step)
        self._records[step] = record
        keep_within(self._records, self.engine.trace.budget_bytes, at_least=2)
        return record

    def view(self, step: int) -> StepView:
        return self._cached(("view", step), lambda: view_of(self.engine, step))

    def gradchecks(self, step: int) -> list[GradCheck]:
        """Both sides' finite-difference checks at ``step``, within a third of the time left."""
        return self._cached(("gradcheck", step),
                            lambda: gradcheck(self.engine, step, seconds=max(0.5, self.budget.left() / 3)))

    def gradcheck_of(self, step: int, side: str, weight: str) -> GradCheck | None:
        return next((c for c in self.gradchecks(step) if c.side == side and c.weight == weight), None)

    def torch_fresh(self, step: int) -> dict[str, np.ndarray]:
        """torch's forward, loss and fresh gradients in float64 from its own weights at ``step``."""
        return self._cached(("torch64", step), lambda: TorchReplica(self.engine, self.record(step)).step_outputs())

    def numpy_float64(self, step: int) -> dict[str, np.ndarray]:
        """NumPy's forward, loss and gradients in float64 from the torch side's weights at ``step``."""
        def make() -> dict[str, np.ndarray]:
            record = self.record(step)
            names = self.engine.live.numpy_weight_names(record)
            start = {n: record.torch.get(keys.before(n), record.numpy[keys.before(n)]) for n in names}
            return NumpyReplica(self.engine, record, start).step_outputs()

        return self._cached(("numpy64", step), make)

    def torch_replica(self, step: int) -> TorchReplica:
        """A fresh float64 replica (not cached: callers may change its weights)."""
        return TorchReplica(self.engine, self.record(step))

    def torch_names(self, numpy_name: str) -> tuple[str, ...]:
        for m in self.scenario.mapping:
            if m.numpy == numpy_name:
                return m.torch_names
        return (numpy_name,)

    def pieces(self, numpy_name: str, array: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """``array`` (NumPy layout) split into the torch parameters it maps to, by torch name."""
        for m in self.scenario.mapping:
            if m.numpy == numpy_name and len(m.torch_names) > 1:
                parts = m.layout.to_torch(np.asarray(array))
                return list(zip(m.torch_names, [np.asarray(p) for p in parts], strict=True))
        return [(self.torch_names(numpy_name)[0], np.asarray(array))]

    def torch_zeroing_function(self) -> str:
        """Where the torch side's gradients are (or should be) zeroed."""
        fns = self.scenario.torch
        if fns.step is not None:
            return "torch.step"
        for name, fn, default in (("torch.update", fns.update, default_torch_update),
                                  ("torch.backward", fns.backward, default_torch_backward)):
            if fn is not default and "zero_" in _source(fn):
                return name
        if fns.update is not default_torch_update and fns.backward is default_torch_backward:
            return "torch.update"
        if fns.backward is default_torch_backward and fns.optimizer is not None:
            return "torch.optimizer"
        return "torch.backward"

    def hyper(self) -> dict[str, Any]:
        return dict(self.scenario.hyper)


def _source(fn: Any) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""
