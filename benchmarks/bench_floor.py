"""Benchmark: what the work `gradstep check` must do costs, layer by layer, against the bare loop.

    python benchmarks/bench_floor.py [--scenario fizzbuzz] [--variant fixed] [--epochs 1000]

``bench_check.py`` times the engine as a whole. This one asks how much of that
is the work the check is defined to do, and how much is the engine around it.
It times, each in its own subprocess and in the same run, loops built from
gradstep's own parts with no engine, trace, window or checkpoints:

- ``bare``: the scenario's functions, nothing recorded (``bench_check.bare_loop``);
- ``record``: each side's step through its runner, every tensor recorded in the
  NumPy side's names and layout (what any comparison needs first);
- ``compare``: ``record`` plus every element of every pair compared each step
  (one ``PairSummarizer`` pass: worst abs/rel difference, out-of-tolerance count);
- ``local``: ``compare`` plus the local error wherever a pair is out of tolerance
  free-running (the NumPy step re-run from the torch side's weights, compared);
- ``two-process``: the ``local`` layer's work split over two processes, torch
  in one and the NumPy side, comparison and local error in a forked worker
  (Linux; a sketch of a design gradstep does not have, keeping no trace);
- ``gradstep``: ``Engine.run``, as ``gradstep check`` runs it.

Each layer's time is printed as a ratio to the bare loop of the same run. The
``local`` ratio is the floor of any single-process design of the check as
issue #2 defines it: the engine can only add to it. The layers run round-robin
``--repeat`` times and each keeps its fastest run (shared machines are noisy,
and noise only ever adds time); torch runs on one thread, as the CLI runs it,
unless OMP_NUM_THREADS is set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

LAYERS = ("bare", "record", "compare", "local", "two-process", "gradstep")
SLOTS = 8  # steps the torch side may run ahead of the NumPy side in the two-process layer


class _Pairs:
    """What the layered loops compare, learnt from one step: the pairs, their sizes and tolerances."""

    def __init__(self, first: Any, inputs: set[str]) -> None:
        from gradstep.compare import PairSummarizer, tolerance_for

        numpy_side, torch_side = first.numpy, first.torch
        self.names = [k for k in numpy_side if k in torch_side and numpy_side[k].size == torch_side[k].size]
        self.summarizer = PairSummarizer(
            [int(numpy_side[k].size) for k in self.names],
            [tolerance_for(numpy_side[k].dtype, torch_side[k].dtype) for k in self.names],
        )
        self.rerun = np.array([k not in inputs for k in self.names])  # inputs are compared directly

    def compare(self, numpy_side: dict, torch_side: dict) -> bool:
        """Every element of every pair; whether a pair a step explains is out of tolerance."""
        free = self.summarizer.summarize([numpy_side[k] for k in self.names], [torch_side[k] for k in self.names])
        return bool(((free.n_bad > 0) & self.rerun).any())

    def local_error(self, pair: Any, record: Any) -> None:
        """The NumPy step re-run from the torch side's weights, compared again."""
        self.compare(pair.local_step(record), record.torch)


def _set_up(scenario_name: str, variant: str) -> tuple[Any, _Pairs]:
    from gradstep.engine import TORCH_DTYPES, Lockstep
    from gradstep.loader import load_scenario

    scenario = load_scenario(scenario_name, variant)
    pair = Lockstep(scenario, "cpu", TORCH_DTYPES[scenario.dtype])
    return pair, _Pairs(pair.step(0), set(pair.data.batch(0, 0)))


def layered_loop(scenario_name: str, variant: str, epochs: int, layer: str) -> dict:
    """``record``, ``compare`` or ``local``: gradstep's parts in a plain loop."""
    pair, pairs = _set_up(scenario_name, variant)
    steps = epochs * pair.steps_per_epoch
    local_steps = 0
    started = time.perf_counter()
    for step in range(1, steps):
        record = pair.step(step)
        if layer == "record":
            continue
        if pairs.compare(record.numpy, record.torch) and layer == "local":
            pairs.local_error(pair, record)
            local_steps += 1
    return {"seconds": time.perf_counter() - started, "steps": steps - 1, "local_steps": local_steps}


def two_process_loop(scenario_name: str, variant: str, epochs: int) -> dict:
    """The ``local`` layer's work split over two processes (Linux: the worker is forked).

    The sides' free-running trajectories do not depend on each other; only the
    local error needs the torch side's weights. So this process runs the torch
    side and copies its tensors into a ring of shared-memory slots, while a
    worker runs the NumPy side, compares and measures the local error, and
    says when it is done with a slot. A sketch of a design, with no trace
    kept: what it would cost, not a part of gradstep.
    """
    import multiprocessing

    from gradstep.trace import StepRecord

    context = multiprocessing.get_context("fork")
    pair, pairs = _set_up(scenario_name, variant)
    steps = epochs * pair.steps_per_epoch
    shapes = pair.step(1).torch  # the torch side's tensors, for the slots' layout
    slots = _shared_slots(context, {k: (v.shape, v.dtype) for k, v in shapes.items()}, SLOTS)
    to_worker, from_main = context.Pipe()
    to_main, from_worker = context.Pipe()

    def numpy_worker() -> None:
        local_steps = 0
        for step in range(2, steps):
            epoch, index = pair.position(step)
            numpy_out = pair.numpy.step(pair.data.batch(epoch, index))
            if index == pair.steps_per_epoch - 1:
                pair.numpy.metrics(pair.data)
            from_main.recv_bytes()  # the torch side's step is in its slot
            record = StepRecord(step, epoch, index, numpy_out, slots[step % SLOTS])
            if pairs.compare(record.numpy, record.torch):
                pairs.local_error(pair, record)
                local_steps += 1
            from_worker.send_bytes(local_steps.to_bytes(8, "little"))  # the slot is free again

    worker = context.Process(target=numpy_worker, daemon=True)
    started = time.perf_counter()
    worker.start()
    finished = local_steps = 0
    for step in range(2, steps):
        if step - 2 >= SLOTS:  # the slot's previous step must be done with
            local_steps = int.from_bytes(to_main.recv_bytes(), "little")
            finished += 1
        epoch, index = pair.position(step)
        torch_out = pair.torch.step(pair.data.batch(epoch, index))
        if index == pair.steps_per_epoch - 1:
            pair.torch.metrics(pair.data)
        for key, view in slots[step % SLOTS].items():
            np.copyto(view, torch_out[key])
        to_worker.send_bytes(b"")
    while finished < steps - 2:
        local_steps = int.from_bytes(to_main.recv_bytes(), "little")
        finished += 1
    seconds = time.perf_counter() - started
    worker.join()
    return {"seconds": seconds, "steps": steps - 2, "local_steps": local_steps}


def _shared_slots(context: Any, layout: dict[str, tuple], count: int) -> list[dict[str, np.ndarray]]:
    """``count`` sets of arrays of the given shapes and dtypes, in memory a forked worker shares."""
    offsets, size = {}, 0
    for key, (shape, dtype) in layout.items():
        offsets[key] = size
        size += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64  # cache-line aligned
    memory = np.frombuffer(context.RawArray("b", size * count), dtype=np.uint8)
    return [{key: np.ndarray(shape, dtype, buffer=memory, offset=i * size + offsets[key])
             for key, (shape, dtype) in layout.items()} for i in range(count)]


def child(layer: str, scenario: str, variant: str, epochs: int) -> None:
    if layer == "bare":
        from bench_check import bare_loop
        out = bare_loop(scenario, variant, epochs)
    elif layer == "gradstep":
        from gradstep.engine import Engine
        from gradstep.loader import load_scenario
        engine = Engine(load_scenario(scenario, variant))
        started = time.perf_counter()
        result = engine.run(steps=epochs * engine.steps_per_epoch)
        out = {"seconds": time.perf_counter() - started, "steps": result.steps}
    elif layer == "two-process":
        out = two_process_loop(scenario, variant, epochs)
    else:
        out = layered_loop(scenario, variant, epochs, layer)
    print(json.dumps(out))


def measure(layer: str, args: argparse.Namespace) -> dict:
    from bench_check import run_child

    return run_child([sys.executable, __file__, "--child", layer, "--scenario", args.scenario,
                      "--variant", args.variant, "--epochs", str(args.epochs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="fizzbuzz")
    parser.add_argument("--variant", default="fixed")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=LAYERS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.scenario, args.variant, args.epochs)
        return
    runs: dict[str, dict] = {}
    for _ in range(args.repeat):
        for layer in LAYERS:
            run = measure(layer, args)
            if layer not in runs or run["seconds"] < runs[layer]["seconds"]:
                runs[layer] = run
    per_step = {layer: run["seconds"] / run["steps"] for layer, run in runs.items()}
    report = {
        "scenario": f"{args.scenario} ({args.variant}), {runs['bare']['steps']} steps",
        "microseconds_per_step": {layer: round(1e6 * s, 1) for layer, s in per_step.items()},
        "ratio_to_bare": {layer: round(s / per_step["bare"], 2) for layer, s in per_step.items()},
        "local_error_measured_on_steps": runs["local"]["local_steps"],
        "fastest_of": args.repeat,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
