"""The trace's one memory budget: the window gives way to the summaries and checkpoints."""

import platform
import sys

import numpy as np
import pytest

import gradstep.trace
from gradstep.heap import give_back_freed_memory
from gradstep.trace import Checkpoint, StepRecord, Trace

STEP_BYTES = 4000  # each made-up step: 250 float64 a side
BUDGET = 200_000


def made_up_step(step: int) -> StepRecord:
    return StepRecord(step, 0, step, {"w": np.zeros(250)}, {"w": np.zeros(250)})


def keep_steps(trace: Trace, start: int, count: int) -> None:
    for step in range(start, start + count):
        trace.keep(made_up_step(step))


def total(trace: Trace) -> int:
    return sum(trace.held_bytes().values())


@pytest.fixture
def trace() -> Trace:
    trace = Trace(budget_bytes=BUDGET)
    trace.key_columns(["w"])
    return trace


def test_the_window_fills_what_the_budget_leaves(trace):
    keep_steps(trace, 0, 100)
    assert BUDGET - STEP_BYTES < total(trace) <= BUDGET  # whole steps, never over
    assert trace.window_steps() == list(range(100 - len(trace.window_steps()), 100))  # the latest ones


def test_the_window_gives_way_as_checkpoints_and_summaries_grow(trace):
    keep_steps(trace, 0, 100)
    full = trace.held_bytes()["window"]
    trace.add_checkpoint(Checkpoint(0, {}, {}), 30_000)
    trace.add_checkpoint(Checkpoint(16, {}, {}), 30_000)
    keep_steps(trace, 100, 1)
    after_checkpoints = trace.held_bytes()["window"]
    assert full - 60_000 - STEP_BYTES < after_checkpoints <= full - 60_000 + STEP_BYTES
    trace.reserve(2000)  # the summary rows of a 2,000-step run, made at once
    keep_steps(trace, 101, 1)
    assert trace.held_bytes()["summaries"] > 2000 * 17
    assert trace.held_bytes()["window"] < after_checkpoints - 2000 * 17 + STEP_BYTES
    assert BUDGET - STEP_BYTES < total(trace) <= BUDGET


def test_the_window_keeps_a_quarter_of_the_budget_whatever_the_checkpoints_take(trace):
    for step in range(0, 64, 16):
        trace.add_checkpoint(Checkpoint(step, {}, {}), BUDGET // 2)  # twice the budget in all
    keep_steps(trace, 0, 100)
    assert BUDGET // 4 - STEP_BYTES < trace.held_bytes()["window"] <= BUDGET // 4


def test_freed_steps_are_handed_back_each_time_the_window_turns_over(trace, monkeypatch):
    handed_back = []
    monkeypatch.setattr(gradstep.trace, "give_back_freed_memory", lambda: handed_back.append(True))
    steps_per_turn = BUDGET // STEP_BYTES
    keep_steps(trace, 0, steps_per_turn)  # filling the window lets nothing go
    assert handed_back == []
    keep_steps(trace, steps_per_turn, 3 * steps_per_turn)
    assert len(handed_back) in (2, 3)  # once a turnover, not once a step


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_memory_is_really_handed_back_on_glibc():
    assert give_back_freed_memory() is True


def test_without_malloc_trim_nothing_is_handed_back_and_nothing_fails(monkeypatch):
    import gradstep.heap

    monkeypatch.setattr(gradstep.heap, "_malloc_trim", lambda: None)  # macOS, Windows, musl
    assert give_back_freed_memory() is False
    trace = Trace(budget_bytes=BUDGET)
    keep_steps(trace, 0, 3 * BUDGET // STEP_BYTES)  # turns over, asks, carries on
    assert BUDGET - STEP_BYTES < total(trace) <= BUDGET


def test_a_freed_model_sized_array_goes_back_to_the_system():
    """glibc raises the size it maps blocks from to that of a big block freed: the next ones of that size come
    from the heap, and one freed there stays in the process (on a 2048 x 2048 layer, ~400 MB of such holes).
    ``map_big_blocks`` (the CLI's first act) fixes the size. In a process of its own: it lasts for the process."""
    import os
    import subprocess

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc and /proc")
    program = """
import numpy as np
from gradstep.heap import map_big_blocks
def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
assert map_big_blocks()
first = np.ones(2 << 20); del first  # 16 MB: unmapped when freed (left to itself, glibc maps from 16 MB up now)
a = np.ones(2 << 20); b = np.ones(2 << 20)
held = resident_mb(); del a
print(round(held - resident_mb()))
"""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 15  # a's 16 MB went back
