"""The lockstep engine: both sides, one minibatch at a time, from the same start.

Each step runs forward, loss, backward and update on both sides and compares
every tensor pair (the free-running comparison: each side on its own
trajectory). Where a pair is out of tolerance, the engine also measures the
step's *local error*: it re-runs the NumPy step from the torch side's weights
of that step (cast exactly to the NumPy dtypes) and compares that with the
torch step. A difference that disappears locally is drift (precision,
summation order: it accumulates over thousands of steps with no bug); one
that remains is a divergence. Inputs, and the initial weights at step 0, are
compared directly: no earlier step can explain them.

Replaying is deterministic: the same scenario, device and dtype give the same
tensors bit for bit, and any earlier step is recomputed from the trace's
checkpoints rather than from step 0.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradstep import keys
from gradstep.compare import (
    PairSummarizer,
    Status,
    StepSummary,
    TensorComparison,
    Tolerance,
    check_tolerances,
    compare_tensor,
    lower_precision,
    smallest_norm,
    tolerance_for,
)
from gradstep.referee import Judgement, RefereeReport, TorchStart, judge
from gradstep.scenario import Scenario, set_position
from gradstep.sides import NumpyRunner, ScenarioError, TorchRunner, call, check_data, mapping_error
from gradstep.trace import Checkpoint, EpochMetrics, StepRecord, Trace, keep_within

_DIVERGING = Status.SHAPE  # SHAPE, NONFINITE and DIVERGED count as divergences
_RECOMPUTED_KEPT = 8  # old steps recomputed from checkpoints and kept (fewer when they outgrow the trace budget)
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class EngineError(Exception):
    """Bad input to the engine itself (device, dtype, tolerances): a clear message, nothing run."""


@dataclass(frozen=True)
class Divergence:
    """The first tensor whose local error is out of tolerance."""

    step: int
    epoch: int
    index: int
    comparison: TensorComparison
    local: bool  # measured from the same weights (True) or directly (inputs, initial weights)
    judgement: Judgement | None = None  # the precision referee's, where it ran
    referee_failure: str = ""  # why the referee could not run, where it did not

    @property
    def tensor(self) -> str:
        return self.comparison.key

    def decided_by(self) -> str:
        """Which rule decided, in words with its numbers."""
        if self.comparison.status == Status.NONFINITE:
            return "NaN or Inf on one side where the other side is finite"
        if not self.local:
            return "compared directly: no earlier step can explain a difference here"
        if self.judgement is not None:
            return self.judgement.sentence()
        if self.referee_failure:
            return f"out of tolerance locally; {self.referee_failure}, so it counts as a divergence"
        return "out of tolerance locally, both sides from the same weights"


@dataclass(frozen=True)
class Drift:
    """Free-running differences beyond tolerance that the local error explains away."""

    first_step: int
    first_tensor: str
    max_abs: float
    max_abs_step: int
    max_abs_tensor: str


@dataclass(frozen=True)
class RunResult:
    steps: int
    parity: bool
    first_divergence: Divergence | None
    first_nonfinite: int | None
    drift: Drift | None
    stopped: str  # "end", "steps", "divergence", "nonfinite", "cancelled", "error"
    error: ScenarioError | None = None


class Lockstep:
    """The two sides of one scenario instance, stepping together."""

    def __init__(self, scenario: Scenario, device: str, dtype: torch.dtype, data: Any = None):
        """``data``: the minibatches of another instance of the same scenario, shared rather than
        made again (a replay that restores a checkpoint: its set-up draws do not matter)."""
        self.scenario = scenario
        self.hp = scenario.hp()
        self.hp.torch_dtype = dtype
        self.hp.device = device
        set_position(self.hp, 0, 1)  # data, init and model are called as of step 0
        np.random.seed(scenario.seed)
        torch.manual_seed(scenario.seed)
        self.data = data if data is not None else _call_setup("data", scenario.data, self.hp)
        self.steps_per_epoch = int(self.data.steps_per_epoch)
        self.hp.steps_per_epoch = self.steps_per_epoch
        weights = _call_setup("init", scenario.init, self.hp)
        self.numpy = NumpyRunner(scenario, self.hp, weights)
        try:
            self.torch = TorchRunner(scenario, self.hp, weights, device, dtype)
        except (KeyError, ValueError) as error:
            raise mapping_error(error, scenario.source_path) from error
        self._batch_names: set[str] | None = None
        # Whether the NumPy step draws from np.random: learnt on the first step.
        self.numpy_draws_random: bool | None = None

    def position(self, step: int) -> tuple[int, int]:
        return divmod(step, self.steps_per_epoch)

    def batch(self, epoch: int, index: int) -> Any:
        """The scenario's minibatch: what its ``data.batch`` raises or returns wrong is its error, at its step."""
        try:
            return call("scenario", "data.batch", self.data.batch, epoch, index)
        except ScenarioError as error:
            error.step = epoch * self.steps_per_epoch + index
            raise

    def step(self, step: int) -> StepRecord:
        epoch, index = set_position(self.hp, step, self.steps_per_epoch)
        batch = self.batch(epoch, index)
        try:
            numpy_step = self._first_numpy_step if self.numpy_draws_random is None else self.numpy.step
            numpy_out = numpy_step(batch)
            if self.torch.retain is None:  # learnt from the first step's NumPy gradients
                self.torch.retain = self._activation_grads(numpy_out)
            torch_out = self.torch.step(batch)
        except ScenarioError as error:
            error.step = step
            raise
        record = StepRecord(step, epoch, index, numpy_out, torch_out)
        if index == self.steps_per_epoch - 1:
            record.metrics = {"numpy": self.numpy.metrics(self.data), "torch": self.torch.metrics(self.data)}
        return record

    def _first_numpy_step(self, batch: Any) -> dict[str, np.ndarray]:
        """The first NumPy step, watching whether it draws from np.random (most do not)."""
        before = np.random.get_state()
        out = self.numpy.step(batch)
        after = np.random.get_state()
        self.numpy_draws_random = before[2] != after[2] or not np.array_equal(before[1], after[1])
        return out

    def _activation_grads(self, numpy_out: dict[str, np.ndarray]) -> tuple[str, ...]:
        """Activations whose gradients the NumPy side reports: torch must retain theirs."""
        weights = set(self.numpy.weights)
        return tuple(keys.base_name(k) for k in numpy_out if k.startswith("grad ") and keys.base_name(k) not in weights)

    def advance(self, step: int) -> None:
        """Run ``step`` on both sides recording nothing (replays; metrics are not needed there)."""
        epoch, index = set_position(self.hp, step, self.steps_per_epoch)
        batch = self.batch(epoch, index)
        try:
            self.numpy.advance(batch)
            self.torch.advance(batch)
        except ScenarioError as error:
            error.step = step
            raise

    def local_step(self, record: StepRecord) -> dict[str, np.ndarray]:
        """The NumPy step re-run from the torch side's weights at the start of ``record`` (and from torch's
        optimizer state, where the scenario maps it: ``Scenario.state_from_torch``)."""
        start = {}
        for name in self.numpy_weight_names(record):
            numpy_w = record.numpy[keys.before(name)]
            torch_w = record.torch.get(keys.before(name))
            # No copy of its own where the dtypes agree: the step copies what its update may change.
            start[name] = numpy_w if torch_w is None else np.asarray(torch_w).astype(numpy_w.dtype, copy=False)
        set_position(self.hp, record.step, self.steps_per_epoch)
        batch = self.batch(record.epoch, record.index)
        # The re-run must not shift the NumPy side's random stream, if it draws from one:
        # saving the generator costs more than the step itself, so only then.
        rng = np.random.get_state() if self.numpy_draws_random is not False else None
        try:
            return self.numpy.step(batch, weights=start, state=self.torch.state_for_numpy)
        except ScenarioError as error:
            error.step = record.step
            raise
        finally:
            if rng is not None:
                np.random.set_state(rng)

    def phase_of(self, key: str) -> str:
        """before, input, forward, loss, grad or after (keys.PHASES) for a key of this scenario's steps."""
        if self._batch_names is None:
            self._batch_names = set(self.data.batch(0, 0))
        losses = set(self.numpy.loss_names) | set(self.torch.loss_names)
        return keys.phase_of(key, self._batch_names, losses)

    def compute_order(self, record: StepRecord, known: list[str] = ()) -> list[str]:
        """The record's keys by phase (before, input, forward, loss, grad, after); within a phase,
        in the order of ``known`` (the trace's columns) first, then NumPy's order, torch-only last."""
        present = dict.fromkeys([*record.numpy, *record.torch])
        names = list(dict.fromkeys([*(k for k in known if k in present), *present]))
        return sorted(names, key=lambda k: _PHASE_RANK[self.phase_of(k)])

    @staticmethod
    def numpy_weight_names(record: StepRecord) -> list[str]:
        return [keys.base_name(k) for k in record.numpy if k.startswith("before ")]

    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.numpy.snapshot(), self.torch.snapshot()

    def restore(self, checkpoint: Checkpoint) -> None:
        self.numpy.restore(checkpoint.numpy)
        self.torch.restore(checkpoint.torch)


def _call_setup(what: str, fn: Callable[..., Any], hp: Any) -> Any:
    value = call("scenario", what, fn, hp)  # its exceptions, sys.exit too, are the scenario's error
    if what == "data":
        check_data(fn, value)
    return value


class Engine:
    """Steps a scenario, keeps its trace, finds the first divergence, recomputes old steps."""

    def __init__(
        self,
        scenario: Scenario,
        device: str = "cpu",
        dtype: str | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        tf32: bool | None = None,
        trace: Trace | None = None,
        memory_mb: float | None = None,
    ):
        """``memory_mb``: the trace's budget (summaries, checkpoints, window) in MiB; ``trace`` a trace of one's own."""
        self.scenario = scenario
        self.options = dict(device=device, dtype=dtype, rtol=rtol, atol=atol, tf32=tf32, memory_mb=memory_mb)
        self.device = _check_device(device)
        self.dtype_name = dtype or scenario.dtype
        if self.dtype_name not in TORCH_DTYPES:
            raise EngineError(f"dtype must be one of {', '.join(TORCH_DTYPES)}, not {self.dtype_name!r}")
        if (rtol is None) != (atol is None):
            raise EngineError("--rtol and --atol must be given together")
        if rtol is None:  # the scenario's own, if it declares them; the command line overrides
            rtol, atol = scenario.rtol, scenario.atol
        try:
            if rtol is not None:
                check_tolerances(rtol, atol)
            for t_rtol, t_atol in scenario.tolerances.values():
                check_tolerances(t_rtol, t_atol)
        except (ValueError, TypeError) as error:
            raise EngineError(f"tolerance: {error}") from None
        self.rtol, self.atol = rtol, atol
        # Per tensor, from the scenario: only when the command line gave none.
        self.tensor_tolerances = {} if self.options["rtol"] is not None else dict(scenario.tolerances)
        self.referee_reports: OrderedDict[int, RefereeReport] = OrderedDict()  # the latest, by step
        self.referee_runs = 0  # steps the referee re-ran, and the seconds it took: its cost on a run
        self.referee_seconds = 0.0
        self.rounding_reasons: dict[str, str] = {}  # per tensor: the first rounding verdict's sentence
        self.rounding_summary = ""  # the first step with rounding verdicts, in one sentence
        if memory_mb is not None and not 0 < memory_mb < math.inf:  # NaN fails both
            raise EngineError(f"--memory must be a finite positive number of MiB, not {memory_mb}")
        self.tf32 = _set_tf32(self.device, tf32)
        with rng_preserved():
            self.live = Lockstep(scenario, self.device, TORCH_DTYPES[self.dtype_name])
            self._rng = np.random.get_state(), torch.get_rng_state()  # the streams right after set-up
        self.trace = trace or (Trace(budget_bytes=int(memory_mb * 2**20)) if memory_mb else Trace())
        self.steps_per_epoch = self.live.steps_per_epoch
        self.total_steps = scenario.epochs * self.steps_per_epoch
        self.next_step = 0
        self.first_divergence: Divergence | None = None
        self.first_nonfinite: int | None = None
        self.drift_start: tuple[int, str] | None = None
        self._plan: _StepPlan | None = None
        self._replay: Lockstep | None = None
        self._recomputed: OrderedDict[int, StepRecord] = OrderedDict()
        self.last_error: ScenarioError | None = None

    # ---- stepping ----------------------------------------------------------
    def step(self) -> StepRecord:
        """Run the next step on both sides, compare and record it."""
        with self._own_rng():
            return self._step()

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Step on this engine's own random streams, whatever else ran in the process meanwhile.

        Two engines (a patch's replay beside the run it replaces) or a diagnosis
        would otherwise draw from one global np.random / torch stream, and a
        scenario that draws inside its steps would depend on what ran before.
        """
        outer = np.random.get_state(), torch.get_rng_state()
        np.random.set_state(self._rng[0])
        torch.set_rng_state(self._rng[1])
        try:
            yield
        finally:
            self._rng = np.random.get_state(), torch.get_rng_state()
            np.random.set_state(outer[0])
            torch.set_rng_state(outer[1])

    def _step(self, keep_whole: bool = True) -> StepRecord:
        """``keep_whole``: False for a step the window would have let go of before the run ends."""
        step = self.next_step
        if self.trace.wants_checkpoint(step):
            self._checkpoint(step)
        record = self.live.step(step)
        statuses = self._classify(record)
        self.trace.keep(record, self._plan.record_bytes(record), alone=not keep_whole)
        if record.metrics:
            m = record.metrics
            self.trace.metrics.append(EpochMetrics(step, record.epoch, m["numpy"], m["torch"]))
        self.next_step += 1
        self._note_firsts(record, statuses)
        return record

    def run(
        self,
        steps: int | None = None,
        until: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> RunResult:
        """Step ``steps`` more (default: to the scenario's end), or until a divergence or NaN/Inf.

        ``until`` is ``"divergence"`` or ``"nonfinite"``; ``cancelled`` is polled
        between steps so a caller on another thread can stop a long run.
        """
        target = self.total_steps if steps is None else self.next_step + steps
        stopped = "end" if target >= self.total_steps else "steps"
        start = self.next_step
        # A run to a known step keeps whole only the steps the window will still hold when it gets
        # there; a run that may stop early (``until``) keeps them all, for stepping back from the stop.
        keep_from = start
        try:
            with self._own_rng():
                while self.next_step < target:
                    if cancelled is not None and cancelled():
                        stopped = "cancelled"
                        break
                    self._step(keep_whole=self.next_step >= keep_from)
                    if self.next_step == start + 1:  # the step's keys are known now: room for the rest
                        self.trace.reserve(target)
                        if until is None:
                            keep_from = target - self.trace.window_capacity(self._plan.smallest_record_bytes)
                    if progress is not None:
                        progress(self.next_step - start, target - start)
                    if until == "divergence" and self.first_divergence is not None:
                        stopped = "divergence"
                        break
                    if until == "nonfinite" and self.first_nonfinite is not None:
                        stopped = "nonfinite"
                        break
        except ScenarioError as error:
            self.last_error = error
            return self.result("error", error)
        return self.result(stopped)

    def result(self, stopped: str = "end", error: ScenarioError | None = None) -> RunResult:
        return RunResult(
            steps=self.next_step,
            parity=self.first_divergence is None and error is None,
            first_divergence=self.first_divergence,
            first_nonfinite=self.first_nonfinite,
            drift=self.drift(),
            stopped=stopped,
            error=error,
        )

    # ---- comparison of one step -------------------------------------------
    def _classify(self, record: StepRecord) -> np.ndarray:
        """Each pair's status at this step: free-running, then locally, then by the precision referee."""
        plan = self._plan_for(record)
        free = plan.summarize(record.numpy, record.torch)
        status = plan.static_status.copy()
        bad = plan.out_of_tolerance(free)
        if bad.any():
            status[plan.compared[bad]] = Status.DIVERGED
            self._rounded_copies(record, plan, np.flatnonzero(bad & plan.direct_at(record.step)), status)
            nonlocal_bad = bad & ~plan.direct_at(record.step)
            if nonlocal_bad.any():
                record.local = self.live.local_step(record)
                # Only the pairs out of tolerance free-running need their local error.
                local = plan.summarize_subset(nonlocal_bad, record.local, record.torch)
                local_bad = plan.out_of_tolerance(local, nonlocal_bad)
                picked = np.flatnonzero(nonlocal_bad)
                status[plan.compared[picked[~local_bad]]] = Status.DRIFT
                if local_bad.any():
                    self._referee(record, plan, picked[local_bad], status)
            nonfinite = np.isinf(free.max_abs) & bad
            status[plan.compared[nonfinite & (status[plan.compared] != Status.DRIFT)]] = Status.NONFINITE
        losses = (_scalar(record.numpy.get("loss")), _scalar(record.torch.get("loss")))
        self.trace.add_summary(plan.columns, status, plan.compared_columns, free.max_abs, free.max_rel, free.n_bad,
                               losses)
        plan.last_nonfinite = not free.finite or bool((status == Status.NONFINITE).any())
        return status

    def _referee(self, record: StepRecord, plan: _StepPlan, pairs: np.ndarray, status: np.ndarray) -> None:
        """Re-run the step in another precision: the pairs that are only rounding become ROUNDING.

        Not after the first divergence: the math is known to differ by then, and
        every later step would pay for a re-run.
        """
        if self.first_divergence is not None:
            return
        judged = [plan.compared_keys[i] for i in pairs]
        started = time.perf_counter()
        with rng_preserved():
            # The NumPy side starts from torch's state where the scenario maps it (as the local re-run does).
            numpy_state = self.live.torch.state_for_numpy
            numpy_state = self.live.numpy.state_before if numpy_state is None else numpy_state
            report = judge(self.scenario, self.live.hp, self.live.data, record, numpy_state,
                           lambda: self._torch_start(record.step), judged, self.live.torch.retain,
                           {k: self.live.phase_of(k) for k in plan.keys})
        self.referee_runs += 1
        self.referee_seconds += time.perf_counter() - started
        self.referee_reports[record.step] = report
        while len(self.referee_reports) > _REFEREE_REPORTS:
            self.referee_reports.popitem(last=False)
        for i, key in zip(pairs, judged, strict=True):
            if report.rounding(key):
                status[plan.compared[i]] = Status.ROUNDING
                self.rounding_reasons.setdefault(key, f"step {record.step}: {report.judgements[key].sentence()}")
        self.rounding_summary = self.rounding_summary or report.summary()

    def _rounded_copies(self, record: StepRecord, plan: _StepPlan, pairs: np.ndarray, status: np.ndarray) -> None:
        """Pairs compared directly (inputs, initial weights) in two precisions that are equal once both are
        rounded to the lower one: the same values, one side stored in less precision. ROUNDING."""
        for i in pairs:
            key = plan.compared_keys[i]
            a, b = np.asarray(record.numpy[key]), np.asarray(record.torch[key])
            low = lower_precision(a.dtype, b.dtype)
            if a.dtype == b.dtype or low.kind != "f" or a.size != b.size:
                continue
            if np.array_equal(a.astype(low).ravel(), b.astype(low).ravel(), equal_nan=True):
                status[plan.compared[i]] = Status.ROUNDING
                self.rounding_reasons.setdefault(
                    key, f"step {record.step}: rounding only: numpy {a.dtype} and torch {b.dtype} hold the same "
                         f"values once both are rounded to {low.name}")

    def _torch_start(self, step: int) -> TorchStart:
        """The torch side's state at the start of ``step``: optimizer moments, a schedule's rate, counters,
        gradients left from the step before.

        The live run has moved past it: it is replayed from the nearest checkpoint
        to the step (only steps the referee re-runs torch for pay for it).
        """
        replay = self._replay_at(step)
        optimizer = replay.torch.optimizer
        grads = {n: p.grad for n, p in replay.torch.params.items()}
        return TorchStart(replay.torch.state, optimizer.state_dict() if optimizer else None, grads)

    def _plan_for(self, record: StepRecord) -> _StepPlan:
        if self._plan is None or not self._plan.fits(record):
            self._plan = _StepPlan(record, self.rtol, self.atol, self.trace, self.live, self.tolerance_of)
        return self._plan

    def _note_firsts(self, record: StepRecord, status: np.ndarray) -> None:
        plan = self._plan
        assert plan is not None
        if self.first_nonfinite is None and plan.last_nonfinite:
            self.first_nonfinite = record.step
        if self.drift_start is None and (status == Status.DRIFT).any():
            self.drift_start = (record.step, plan.keys[int(np.argmax(status == Status.DRIFT))])
        if self.first_divergence is None:
            diverged = np.flatnonzero(status >= _DIVERGING)
            if diverged.size:
                key = plan.keys[int(diverged[0])]
                self.first_divergence = self._divergence(record, key)

    def _divergence(self, record: StepRecord, key: str) -> Divergence:
        direct = self._plan is not None and self._plan.is_direct(key, record.step)
        numpy_side = record.numpy if direct or record.local is None else record.local
        comparison = self.compare_pair(record, key, numpy_side)
        report = self.referee_reports.get(record.step)
        judgement = report.judgements.get(key) if report is not None else None
        failure = report.failure if report is not None else ""
        return Divergence(record.step, record.epoch, record.index, comparison, local=not direct,
                          judgement=judgement, referee_failure=failure)

    def compare_pair(self, record: StepRecord, key: str, numpy_side: dict[str, np.ndarray] | None = None,
                     ) -> TensorComparison:
        """One pair of ``record`` compared in full, with its tolerance and (updates) its rounding floor."""
        numpy_side = record.numpy if numpy_side is None else numpy_side
        a, b = numpy_side.get(key), record.torch.get(key)
        return compare_tensor(key, a, b, self.rtol, self.atol, update_of_norm=_weight_norm(record, key),
                              tolerance=self.tolerance_of(key, a, b))

    def tolerance_of(self, key: str, a: Any, b: Any) -> Tolerance | None:
        """The scenario's tolerance for ``key`` (by its own name or its weight's), if it declares one."""
        declared = self.tensor_tolerances.get(key) or self.tensor_tolerances.get(keys.base_name(key))
        if declared is None or a is None or b is None:
            return None
        return tolerance_for(np.asarray(a).dtype, np.asarray(b).dtype, *declared)

    def compare(self, step: int, local: bool = False) -> list[TensorComparison]:
        """Full comparison of every tensor of ``step`` (free-running, or local when measured)."""
        record = self.record(step)
        numpy_side = record.local if (local and record.local is not None) else record.numpy
        return [self.compare_pair(record, k, numpy_side) for k in dict.fromkeys([*numpy_side, *record.torch])]

    def drift(self) -> Drift | None:
        if self.drift_start is None or self.trace.steps == 0:
            return None
        max_abs = np.where(self.trace.status == Status.DRIFT, self.trace.max_abs, 0.0)
        step, col = np.unravel_index(int(np.argmax(max_abs)), max_abs.shape)
        return Drift(
            first_step=self.drift_start[0],
            first_tensor=self.drift_start[1],
            max_abs=float(max_abs[step, col]),
            max_abs_step=int(step),
            max_abs_tensor=self.trace.keys[col],
        )

    # ---- old steps -----------------------------------------------------------
    def record(self, step: int) -> StepRecord:
        """The full tensors of any step already run: from the window, or recomputed."""
        if not 0 <= step < self.next_step:
            raise IndexError(f"step {step} has not been run (steps run: {self.next_step})")
        recent = self.trace.recent(step) or self._recomputed.get(step)
        if recent is not None:
            return recent
        return self._recompute(step)

    def _replay_at(self, step: int) -> Lockstep:
        """The second instance, restored from the nearest checkpoint and stepped to the start of ``step``."""
        checkpoint = self.trace.checkpoint_before(step)
        replay = self._replay_lockstep()
        replay.restore(checkpoint)
        for s in range(checkpoint.step, step):
            replay.advance(s)
        return replay

    def _recompute(self, step: int) -> StepRecord:
        """Restore the nearest checkpoint into a second instance and step forward to ``step``."""
        with rng_preserved():
            replay = self._replay_at(step)
            record = replay.step(step)
            if self.trace.status[step].max() >= Status.DRIFT:
                record.local = replay.local_step(record)
        self._recomputed[step] = record
        # A few old steps kept for stepping back through them, as many as the trace's budget allows of a
        # big model's (one record of a 2048 x 2048 layer is some 200 MB), and always the last.
        keep_within(self._recomputed, self.trace.budget_bytes, at_least=1, at_most=_RECOMPUTED_KEPT)
        return record

    def _replay_lockstep(self) -> Lockstep:
        if self._replay is None:
            with rng_preserved():
                # The data is read only (batch(epoch, index)): one copy, however big the data set.
                self._replay = Lockstep(self.scenario, self.device, TORCH_DTYPES[self.dtype_name], self.live.data)
        return self._replay

    def _checkpoint(self, step: int) -> None:
        numpy_snap, torch_snap = self.live.snapshot()
        checkpoint = Checkpoint(step, numpy_snap, torch_snap)
        self.trace.add_checkpoint(checkpoint, _snapshot_bytes(numpy_snap) + _snapshot_bytes(torch_snap))

    def initial_weights(self) -> dict[str, dict[str, np.ndarray]]:
        """Both sides' weights before step 0, NumPy names and layout: what the app shows first."""
        if self.next_step == 0:
            pair = self.live
        else:
            with rng_preserved():
                pair = self._replay_lockstep()
                pair.restore(self.trace.checkpoint_before(0))
        return {"numpy": {n: w.copy() for n, w in pair.numpy.weights.items()},
                "torch": {n: w.copy() for n, w in pair.torch.weights_numpy_layout().items()}}

    # ---- facts for reports -------------------------------------------------
    def phase_of(self, key: str) -> str:
        """The phase of a tensor key (keys.PHASES): what the app groups by and diagnosis ranks by."""
        return self.live.phase_of(key)

    def compute_order(self, record: StepRecord) -> list[str]:
        """A record's keys in compute order, consistent with the trace's columns."""
        return self.live.compute_order(record, self.trace.keys)

    def position(self, step: int) -> tuple[int, int]:
        return self.live.position(step)

    @property
    def unmapped_torch(self) -> list[str]:
        return list(self.live.torch.unmapped)

    def final_state(self) -> dict[str, dict[str, Any]]:
        """The free-running end state: each side's last loss and current weights, NumPy names."""
        last = self.trace.recent(self.next_step - 1) if self.next_step else None
        numpy_loss = _scalar(last.numpy.get("loss")) if last else math.nan
        torch_loss = _scalar(last.torch.get("loss")) if last else math.nan
        return {
            "numpy": {"loss": numpy_loss, "weights": dict(self.live.numpy.weights)},
            "torch": {"loss": torch_loss, "weights": self.live.torch.weights_numpy_layout()},
        }


class _StepPlan:
    """The keys of a step in compute order, which pairs compare element for element, and a summarizer."""

    def __init__(self, record: StepRecord, rtol: float | None, atol: float | None, trace: Trace, live: Lockstep,
                 declared: Callable[[str, Any, Any], Tolerance | None] = lambda key, a, b: None):
        """``declared``: a pair's own tolerance, where the scenario gives one."""
        self.keys = live.compute_order(record, trace.keys)
        self.signature = _signature(record)
        self.columns = trace.key_columns(self.keys)
        self.static_status = np.zeros(len(self.keys), dtype=np.int8)
        compared, sizes, tolerances = [], [], []
        for i, key in enumerate(self.keys):
            a, b = record.numpy.get(key), record.torch.get(key)
            if a is None or b is None:
                self.static_status[i] = Status.ONE_SIDE
            elif np.size(a) != np.size(b):
                self.static_status[i] = Status.SHAPE
            else:
                compared.append(i)
                sizes.append(int(np.size(a)))
                own = declared(key, a, b)
                tolerances.append(own or tolerance_for(np.asarray(a).dtype, np.asarray(b).dtype, rtol, atol))
        self.compared = np.array(compared, dtype=np.int64)
        self.compared_columns = self.columns[self.compared]
        self._side_bytes = [sum(int(v.nbytes) for v in side.values()) for side in (record.numpy, record.torch)]
        self.compared_keys = [self.keys[i] for i in compared]
        self._normwise_plan(record, tolerances)
        self.summarizer = PairSummarizer(sizes, tolerances)
        # "before w" is the array the last step left as "after w", on both sides: its row is that one's.
        position = {k: i for i, k in enumerate(self.compared_keys)}
        self._after_of_before = {i: position[keys.after(keys.base_name(k))] for i, k in enumerate(self.compared_keys)
                                 if k.startswith("before ") and keys.after(keys.base_name(k)) in position}
        self._last: tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray] | None = None
        inputs = set(live.data.batch(record.epoch, record.index))
        self._direct_always = np.array([k in inputs for k in self.compared_keys], dtype=bool)
        self._direct_first = self._direct_always | np.array([k.startswith("before ") for k in self.compared_keys])
        self.last_nonfinite = False

    def _normwise_plan(self, record: StepRecord, tolerances: list[Tolerance]) -> None:
        """Per compared pair: its normwise tolerance; for an update, the pair of the weight it changed."""
        position = {k: i for i, k in enumerate(self.compared_keys)}
        self.norm_tols = np.array([t.norm for t in tolerances], dtype=np.float64)
        self.is_update = np.array([k.startswith("update ") for k in self.compared_keys], dtype=bool)
        self.after_of = np.array([position.get(keys.after(keys.base_name(k)), -1) if u else -1
                                  for k, u in zip(self.compared_keys, self.is_update, strict=True)], dtype=np.int64)
        self.is_update &= self.after_of >= 0
        self.eps = np.array([_eps(record.numpy[k], record.torch[k]) for k in self.compared_keys], dtype=np.float64)
        self.smallest_norms = np.array([
            smallest_norm(lower_precision(record.numpy[k].dtype, record.torch[k].dtype), record.torch[k].size)
            for k in self.compared_keys], dtype=np.float64)
        self._weight_norms = np.zeros(len(self.compared_keys))

    def out_of_tolerance(self, summary: StepSummary, subset: np.ndarray | None = None) -> np.ndarray:
        """Pairs out of tolerance elementwise or normwise. ``subset``: the summary is of these pairs only
        (a local re-run), whose updates' rounding floor is the weight norm of the last whole summary."""
        if subset is None:
            after = np.maximum(summary.sq_a, summary.sq_b)
            self._weight_norms = np.where(self.after_of >= 0, np.sqrt(after[np.maximum(self.after_of, 0)]), 0.0)
            chosen = slice(None)
        else:
            chosen = np.flatnonzero(subset)
        norm_out = summary.norm_out(self.norm_tols[chosen], self.is_update[chosen], self.eps[chosen],
                                    self._weight_norms[chosen], self.smallest_norms[chosen])
        return (summary.n_bad > 0) | norm_out

    @property
    def smallest_record_bytes(self) -> int:
        """A record's size without the local re-run: what the window's capacity is counted in (the most steps)."""
        return sum(self._side_bytes)

    def record_bytes(self, record: StepRecord) -> int:
        """A record's size: the same every step of this plan, but for the local re-run (NumPy-sized)."""
        numpy_bytes, torch_bytes = self._side_bytes
        return numpy_bytes + torch_bytes + (numpy_bytes if record.local is not None else 0)

    def fits(self, record: StepRecord) -> bool:
        return _signature(record) == self.signature

    def summarize(self, numpy_side: dict[str, np.ndarray], torch_side: dict[str, np.ndarray]) -> StepSummary:
        """Every compared pair of a free-running step; a weight's "before" row carried from the last "after"."""
        summary = self.summarizer.summarize([numpy_side[k] for k in self.compared_keys],
                                            [torch_side[k] for k in self.compared_keys],
                                            carried=self._carried(numpy_side, torch_side))
        afters = {k: (numpy_side[k], torch_side[k]) for k in self.compared_keys if k.startswith("after ")}
        self._last = (afters, summary.rows)
        return summary

    def _carried(self, numpy_side: dict[str, np.ndarray], torch_side: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
        """Rows of "before" pairs that are, on both sides, the very arrays the last step's "after" were."""
        if self._last is None:
            return {}
        afters, rows = self._last
        carried = {}
        for i, j in self._after_of_before.items():
            last = afters.get(self.compared_keys[j])
            key = self.compared_keys[i]
            if last is not None and numpy_side[key] is last[0] and torch_side[key] is last[1]:
                carried[i] = rows[j]
        return carried

    def summarize_subset(self, mask: np.ndarray, numpy_side: dict[str, np.ndarray],
                         torch_side: dict[str, np.ndarray]) -> StepSummary:
        """Like ``summarize`` for the compared pairs selected by ``mask`` (a local re-run's)."""
        picked = [int(i) for i in np.flatnonzero(mask)]
        names = [self.compared_keys[i] for i in picked]
        return self.summarizer.summarize([numpy_side[k] for k in names], [torch_side[k] for k in names], picked)

    def direct_at(self, step: int) -> np.ndarray:
        """Pairs compared directly at ``step``: inputs always, initial weights at step 0."""
        return self._direct_first if step == 0 else self._direct_always

    def is_direct(self, key: str, step: int) -> bool:
        if key not in self.compared_keys:
            return True
        return bool(self.direct_at(step)[self.compared_keys.index(key)])


_PHASE_RANK = {p: i for i, p in enumerate(keys.PHASES)}
_REFEREE_REPORTS = 64  # the latest steps' referee reports kept (the first divergence's is in it)


def _signature(record: StepRecord) -> tuple:
    """Names and shapes of both sides' tensors: a step with the same signature reuses the plan."""
    return (tuple(record.numpy), [v.shape for v in record.numpy.values()],
            tuple(record.torch), [v.shape for v in record.torch.values()])


@contextlib.contextmanager
def rng_preserved() -> Iterator[None]:
    """Replays restore the random generators of their checkpoint: give the live run its own back."""
    np_rng, torch_rng = np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        np.random.set_state(np_rng)
        torch.set_rng_state(torch_rng)


def compare_record(record: StepRecord, local: bool, rtol: float | None, atol: float | None) -> list[TensorComparison]:
    """Every tensor of a record compared in full: free-running, or local when it was measured."""
    numpy_side = record.local if (local and record.local is not None) else record.numpy
    names = list(dict.fromkeys([*numpy_side, *record.torch]))
    return [compare_tensor(k, numpy_side.get(k), record.torch.get(k), rtol, atol,
                           update_of_norm=_weight_norm(record, k)) for k in names]


def _weight_norm(record: StepRecord, key: str) -> float | None:
    """For an update pair, the 2-norm of the weight it changed (the greater side's); else None."""
    if not key.startswith("update "):
        return None
    after = keys.after(keys.base_name(key))
    norms = [float(np.linalg.norm(np.asarray(side[after], dtype=np.float64)))
             for side in (record.numpy, record.torch) if after in side]
    return max(norms) if norms else None


def _eps(a: Any, b: Any) -> float:
    dtype = lower_precision(np.asarray(a).dtype, np.asarray(b).dtype)
    return float(np.finfo(dtype).eps) if dtype.kind == "f" else 0.0


def _scalar(value: Any) -> float:
    if value is None:
        return math.nan
    arr = np.asarray(value, dtype=np.float64)
    return float(arr.reshape(-1)[0]) if arr.size else math.nan


def _snapshot_bytes(snap: Any) -> int:
    if isinstance(snap, np.ndarray):
        return snap.nbytes
    if torch.is_tensor(snap):
        return snap.numel() * snap.element_size()
    if isinstance(snap, dict):
        return sum(_snapshot_bytes(v) for v in snap.values())
    if isinstance(snap, (list, tuple)):
        return sum(_snapshot_bytes(v) for v in snap)
    return 64


def _check_device(device: str) -> str:
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EngineError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__})")
        return device
    raise EngineError(f"--device must be cpu or cuda, not {device!r}")


def _set_tf32(device: str, tf32: bool | None) -> bool | None:
    """On CUDA, apply the TF32 choice (if any) and return the state in force; None on CPU."""
    if not device.startswith("cuda"):
        return None
    if tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    return bool(torch.backends.cuda.matmul.allow_tf32)
