"""The lockstep engine: local error against drift, determinism, the bounded trace, errors."""

from pathlib import Path

import numpy as np
import pytest

from gradstep.compare import Status
from gradstep.engine import Engine, EngineError, _snapshot_bytes
from gradstep.loader import load_scenario
from gradstep.trace import Trace

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def engine_for(path: str, variant: str, **trace_options) -> Engine:
    return Engine(load_scenario(path, variant), trace=Trace(**trace_options) if trace_options else None)


def assert_same_record(a, b) -> None:
    assert a.step == b.step
    for side in ("numpy", "torch"):
        left, right = getattr(a, side), getattr(b, side)
        assert list(left) == list(right)
        for key in left:
            np.testing.assert_array_equal(left[key], right[key], strict=True, err_msg=f"{side} {key}")
            assert np.asarray(left[key]).tobytes() == np.asarray(right[key]).tobytes(), f"{side} {key} bits"


def test_drift_without_a_bug_is_parity(chaos_path):
    engine = engine_for(chaos_path, "fixed")
    result = engine.run()
    assert result.parity and result.first_divergence is None
    # The free-running trajectories do part (chaos), and that is reported as drift.
    assert result.drift is not None and result.drift.first_step > 0
    assert (engine.trace.status == Status.DRIFT).any()
    assert not (engine.trace.status == Status.DIVERGED).any()


def test_planted_bug_diverges_at_step_zero_locally(chaos_path):
    result = engine_for(chaos_path, "as-posted").run()
    d = result.first_divergence
    assert not result.parity
    assert (d.step, d.tensor, d.local) == (0, "grad w", True)
    assert float(d.comparison.worst_numpy) == pytest.approx(2 * float(d.comparison.worst_torch), rel=1e-15)


def test_run_until_divergence_stops_there(chaos_path):
    engine = engine_for(chaos_path, "as-posted")
    result = engine.run(until="divergence")
    assert result.stopped == "divergence" and result.steps == 1


def test_nan_on_one_side_is_a_nonfinite_divergence(chaos_path):
    engine = engine_for(chaos_path, "nan")
    result = engine.run(until="nonfinite")
    assert result.stopped == "nonfinite" and result.first_nonfinite == 120
    assert result.first_divergence.step == 120
    assert result.first_divergence.comparison.status == Status.NONFINITE
    assert result.first_divergence.comparison.nan_numpy == 1


def test_replay_from_step_zero_is_bit_identical(chaos_path):
    first = engine_for(chaos_path, "fixed", budget_bytes=1 << 30)
    second = engine_for(chaos_path, "fixed", budget_bytes=1 << 30)
    first.run()
    second.run()
    for step in range(first.next_step):
        assert_same_record(first.record(step), second.record(step))
    np.testing.assert_array_equal(first.trace.losses, second.trace.losses)


def test_old_steps_are_recomputed_bit_identical_from_checkpoints(chaos_path):
    keep_all = engine_for(chaos_path, "fixed", budget_bytes=1 << 30)
    bounded = engine_for(chaos_path, "fixed", budget_bytes=1, interval=4, max_checkpoints=8)
    keep_all.run()
    bounded.run()
    assert bounded.trace.window_steps() == [199]  # only the latest step is kept in full
    for step in (0, 1, 37, 63, 64, 150, 198):
        assert_same_record(keep_all.record(step), bounded.record(step))
    drifted = next(s for s in range(200) if (keep_all.trace.status[s] == Status.DRIFT).any())
    assert bounded.record(drifted).local is not None  # the local error is recomputed too


def test_recomputed_steps_kept_fit_the_trace_budget(chaos_path):
    """Old steps recomputed are kept for stepping back, but never more than the budget holds (a record of a
    big model is hundreds of MB), and always the last one."""
    one_record = engine_for(chaos_path, "fixed", budget_bytes=1 << 30)
    one_record.run(steps=1)
    size = one_record.record(0).nbytes()
    engine = engine_for(chaos_path, "fixed", budget_bytes=1, interval=4, max_checkpoints=8)
    engine.run(steps=40)
    engine.trace.budget_bytes = 3 * size  # three records' worth
    for step in (1, 5, 9, 13, 17, 21):
        engine.record(step)
    assert list(engine._recomputed) == [13, 17, 21]
    engine.trace.budget_bytes = 1
    engine.record(25)
    assert list(engine._recomputed) == [25]


def test_a_diagnosis_keeps_few_full_records_at_hand(chaos_path):
    """The update fits read up to 64 steps: their records come and go, a few at a time."""
    from gradstep.diagnosis.probe import Probe

    engine = engine_for(chaos_path, "fixed", budget_bytes=1, interval=4, max_checkpoints=8)
    engine.run(steps=40)
    probe = Probe(engine)
    for step in range(30):
        assert probe.record(step).step == step
    assert list(probe._records) == [28, 29]


def test_recompute_is_exact_when_the_numpy_step_draws_random_numbers(chaos_path):
    keep_all = engine_for(chaos_path, "noisy", budget_bytes=1 << 30)
    bounded = engine_for(chaos_path, "noisy", budget_bytes=1, interval=4, max_checkpoints=8)
    keep_all.run()
    bounded.run()
    assert keep_all.live.numpy_draws_random
    assert (keep_all.trace.status == Status.DRIFT).any()  # local re-runs happened along the way
    for step in (3, 50, 101, 180):
        assert_same_record(keep_all.record(step), bounded.record(step))


def test_checkpoints_stay_bounded_however_long_the_run(chaos_path):
    engine = engine_for(chaos_path, "fixed", budget_bytes=1, interval=2, max_checkpoints=8)
    engine.run()
    assert len(engine.trace.checkpoints) <= 8
    assert engine.trace.interval > 2  # thinned by doubling the interval
    assert 0 in engine.trace.checkpoints
    assert engine.trace.steps == 200  # summaries for every step


def test_before_rows_are_carried_from_the_last_after_not_compared_again(chaos_path, monkeypatch):
    # "before w" is the very array the last step left as "after w", on both sides: same row, no second pass.
    import gradstep.compare

    scanned: list[int] = []
    scan = gradstep.compare.scan_pair
    monkeypatch.setattr(gradstep.compare, "scan_pair", lambda a, b, *rest: scanned.append(a.size) or scan(a, b, *rest))
    engine = engine_for(chaos_path, "fixed")
    engine.step()
    first = len(scanned)
    engine.step()
    assert len(scanned) - first == first - 1  # one weight: its "before" row came from step 0's "after"
    trace = engine.trace
    before, after = trace.keys.index("before w"), trace.keys.index("after w")
    assert trace.max_abs[1, before] == trace.max_abs[0, after] and trace.n_bad[1, before] == trace.n_bad[0, after]


def test_held_bytes_tell_what_each_tier_keeps(chaos_path):
    engine = engine_for(chaos_path, "fixed", budget_bytes=1, interval=2, max_checkpoints=8)
    engine.run()
    held = engine.trace.held_bytes()
    kept = engine.trace.checkpoints.values()
    assert len(kept) <= 8
    # The thinned-out checkpoints are let go, and only the kept ones counted.
    assert held["checkpoints"] == sum(_snapshot_bytes(c.numpy) + _snapshot_bytes(c.torch) for c in kept)
    assert held["window"] == engine.trace.recent(199).nbytes()  # the one step the window keeps
    assert held["summaries"] >= engine.trace.steps * 17 * len(engine.trace.keys)


def test_a_run_to_a_known_step_keeps_whole_only_what_the_window_ends_with(chaos_path):
    budget = 60_000  # a few dozen of the chaos fixture's steps
    everything = engine_for(chaos_path, "fixed", budget_bytes=budget)
    everything.run(steps=300, until="nonfinite")  # may stop early: every step kept whole as it goes
    known = engine_for(chaos_path, "fixed", budget_bytes=budget)
    held_during = []
    known.run(steps=300, progress=lambda done, total: held_during.append(len(known.trace.window_steps())))
    assert held_during[100] == 1  # far from the end: nothing held but the latest step
    assert 1 < len(known.trace.window_steps()) < 300
    assert known.trace.window_steps() == everything.trace.window_steps()  # the same window at the end
    for step in known.trace.window_steps():
        assert_same_record(known.trace.recent(step), everything.trace.recent(step))
    for name in ("max_abs", "max_rel", "n_bad", "status", "losses"):
        assert getattr(known.trace, name).tobytes() == getattr(everything.trace, name).tobytes(), name
    assert_same_record(known.record(50), everything.record(50))  # a step let go of: recomputed, the same


def test_summaries_are_the_same_stepped_one_by_one_or_run_at_once(chaos_path):
    stepped, run = engine_for(chaos_path, "fixed"), engine_for(chaos_path, "fixed")
    capped = engine_for(chaos_path, "fixed", reserve_bytes=1)
    for _ in range(150):
        stepped.step()  # rows grow as they come
    run.run(steps=150)  # rows made for the whole run first
    capped.run(steps=150)  # a little room at a time
    for other in (run, capped):
        assert other.trace.keys == stepped.trace.keys
        for name in ("max_abs", "max_rel", "n_bad", "status", "losses"):
            a, b = getattr(stepped.trace, name), getattr(other.trace, name)
            assert a.shape == b.shape == (150, *a.shape[1:])
            assert a.tobytes() == b.tobytes(), name
    assert (run.trace.status == Status.DRIFT).any()  # the comparison had something to say


def test_the_local_rerun_starts_from_the_state_its_step_started_from(chaos_path):
    # NumPy momentum lives in `state`, which the update changes in place: re-running the step from the
    # torch side's weights must start from the buffer as it was, not as the step left it.
    engine = engine_for(chaos_path, "momentum")
    for _ in range(4):
        record = engine.step()
    local = engine.live.local_step(record)
    np.testing.assert_allclose(local["after w"], record.numpy["after w"], rtol=1e-12)
    np.testing.assert_allclose(local["after w"], record.torch["after w"], rtol=1e-12)


def test_recompute_does_not_disturb_the_live_run(chaos_path):
    reference = engine_for(chaos_path, "fixed", budget_bytes=1 << 30)
    reference.run()
    engine = engine_for(chaos_path, "fixed", budget_bytes=1, interval=8)
    engine.run(steps=100)
    engine.record(10)
    engine.run()
    assert_same_record(reference.record(199), engine.record(199))


def test_cancel_stops_between_steps(chaos_path):
    engine = engine_for(chaos_path, "fixed")
    calls = iter(range(1000))
    result = engine.run(cancelled=lambda: next(calls) >= 5)
    assert result.stopped == "cancelled" and result.steps == 5


def test_scenario_exception_names_side_function_and_line(tmp_path, chaos_path):
    source = Path(chaos_path).read_text().replace(
        'return {"out": weights["w"] * 1.0}', 'return {"out": weights["w"] * undefined_name}'
    )
    broken = tmp_path / "broken_forward.py"
    broken.write_text(source)
    engine = Engine(load_scenario(str(broken), "fixed"))
    result = engine.run()
    assert result.stopped == "error" and not result.parity
    error = result.error
    assert (error.side, error.function, error.step) == ("numpy", "forward", 0)
    line = next(i for i, text in enumerate(source.splitlines(), 1) if "undefined_name" in text)
    assert error.location == f"{broken}:{line}"
    assert "NameError" in str(error)


def test_bad_engine_options_are_refused(chaos_path):
    scenario = load_scenario(chaos_path, "fixed")
    with pytest.raises(EngineError, match="CUDA is not available"):
        Engine(scenario, device="cuda")
    with pytest.raises(EngineError, match="together"):
        Engine(scenario, rtol=1e-3)
    with pytest.raises(EngineError, match="dtype"):
        Engine(scenario, dtype="float16")


def test_user_tolerance_changes_the_verdict(chaos_path):
    # A tolerance looser than the planted factor of 2 would hide it; a tight one keeps it.
    loose = Engine(load_scenario(chaos_path, "as-posted"), rtol=10.0, atol=1e3).run(steps=3)
    assert loose.parity
