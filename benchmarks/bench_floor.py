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

sys.path.insert(0, str(Path(__file__).resolve().parent))

LAYERS = ("bare", "record", "compare", "local", "gradstep")


def layered_loop(scenario_name: str, variant: str, epochs: int, layer: str) -> dict:
    """``record``, ``compare`` or ``local``: gradstep's parts in a plain loop."""
    from gradstep.compare import PairSummarizer, tolerance_for
    from gradstep.engine import TORCH_DTYPES, Lockstep
    from gradstep.loader import load_scenario

    scenario = load_scenario(scenario_name, variant)
    pair = Lockstep(scenario, "cpu", TORCH_DTYPES[scenario.dtype])
    steps = epochs * pair.steps_per_epoch
    first = pair.step(0)  # the pairs, their sizes and tolerances: known from one step
    names = [k for k in first.numpy if k in first.torch and first.numpy[k].size == first.torch[k].size]
    summarizer = PairSummarizer(
        [int(first.numpy[k].size) for k in names],
        [tolerance_for(first.numpy[k].dtype, first.torch[k].dtype) for k in names],
    )
    inputs = set(pair.data.batch(0, 0))
    rerun = [k not in inputs for k in names]  # inputs are compared directly: no step explains them
    local_steps = 0
    started = time.perf_counter()
    for step in range(1, steps):
        record = pair.step(step)
        if layer == "record":
            continue
        free = summarizer.summarize([record.numpy[k] for k in names], [record.torch[k] for k in names])
        if layer == "local" and any(bad and own for bad, own in zip(free.n_bad > 0, rerun, strict=True)):
            local = pair.local_step(record)
            summarizer.summarize([local[k] for k in names], [record.torch[k] for k in names])
            local_steps += 1
    return {"seconds": time.perf_counter() - started, "steps": steps - 1, "local_steps": local_steps}


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
