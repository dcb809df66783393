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
