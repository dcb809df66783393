"""Benchmark: `gradstep check` against a bare loop of the same NumPy and torch math.

    python benchmarks/bench_check.py [--scenario fizzbuzz] [--variant fixed] [--epochs 1000]

Each measurement runs in its own subprocess so peak memory (ru_maxrss) is the
run's own, with torch on one thread as the CLI runs it (unless OMP_NUM_THREADS
is set). Printed as ratios against the bare loop of the same run; targets
(issue #2): time <= 1.3x, extra peak memory <= 150 MB and no larger at the
full length than at a tenth of it, recomputing an old step <= 50 ms median.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time


def bare_loop(scenario_name: str, variant: str, epochs: int) -> dict:
    """The scenario's own functions called in a plain loop: nothing recorded or compared.

    Through the runners' ``advance``, which calls the scenario's functions and nothing
    else: its pieces or its step functions, and its scheduler, as the engine does.
    """
    from gradstep.engine import TORCH_DTYPES, Lockstep
    from gradstep.loader import load_scenario

    scenario = load_scenario(scenario_name, variant)
    pair = Lockstep(scenario, "cpu", TORCH_DTYPES[scenario.dtype])  # same set-up as the engine
    steps = epochs * pair.steps_per_epoch
    started = time.perf_counter()
    for step in range(steps):
        pair.advance(step)
    return {"seconds": time.perf_counter() - started, "steps": steps}


def gradstep_run(scenario_name: str, variant: str, epochs: int, recompute_samples: int) -> dict:
    from gradstep.engine import Engine
    from gradstep.loader import load_scenario

    engine = Engine(load_scenario(scenario_name, variant))
    started = time.perf_counter()
    result = engine.run(steps=epochs * engine.steps_per_epoch)
    seconds = time.perf_counter() - started
    timings = []
    window = set(engine.trace.window_steps())
    candidates = [s for s in range(engine.next_step) if s not in window]
    rng = random.Random(0)
    for step in rng.sample(candidates, min(recompute_samples, len(candidates))):
        engine._recomputed.clear()  # measure the recompute, not the small cache in front of it
        t = time.perf_counter()
        engine.record(step)
        timings.append(time.perf_counter() - t)
    return {
        "seconds": seconds,
        "steps": result.steps,
        "parity": result.parity,
        "checkpoints": len(engine.trace.checkpoints),
        "checkpoint_interval": engine.trace.interval,
        "window": len(engine.trace.window_steps()),
        "recompute_median_ms": 1000 * statistics.median(timings) if timings else None,
        "held_mb": {tier: round(n / 2**20, 1) for tier, n in engine.trace.held_bytes().items()},
    }


def child(mode: str, scenario: str, variant: str, epochs: int) -> None:
    if mode == "bare":
        out = bare_loop(scenario, variant, epochs)
    elif mode == "idle":
        from gradstep.engine import Lockstep  # noqa: F401  imports only: the memory floor
        out = {"seconds": 0.0}
    else:
        out = gradstep_run(scenario, variant, epochs, recompute_samples=50)
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_child(cmd: list[str]) -> dict:
    """Run a benchmark's child process; its last line of output is its JSON result.

    Torch gets one thread, as the CLI gives it on the CPU, unless OMP_NUM_THREADS
    says otherwise: the bare loop and gradstep then run under the same rule.
    """
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(mode: str, scenario: str, variant: str, epochs: int) -> dict:
    return run_child([sys.executable, __file__, "--child", mode, "--scenario", scenario, "--variant", variant,
                      "--epochs", str(epochs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="fizzbuzz")
    parser.add_argument("--variant", default="fixed")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--child", choices=["bare", "gradstep", "idle"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.scenario, args.variant, args.epochs)
        return
    short = max(1, args.epochs // 10)
    runs = {
        "bare": measure("bare", args.scenario, args.variant, args.epochs),
        "gradstep": measure("gradstep", args.scenario, args.variant, args.epochs),
        "bare_short": measure("bare", args.scenario, args.variant, short),
        "gradstep_short": measure("gradstep", args.scenario, args.variant, short),
    }
    bare, ours = runs["bare"], runs["gradstep"]
    extra = ours["maxrss_mb"] - bare["maxrss_mb"]
    extra_short = runs["gradstep_short"]["maxrss_mb"] - runs["bare_short"]["maxrss_mb"]
    report = {
        "scenario": f"{args.scenario} ({args.variant}), {bare['steps']} steps",
        "bare_seconds": round(bare["seconds"], 3),
        "gradstep_seconds": round(ours["seconds"], 3),
        "time_ratio": round(ours["seconds"] / bare["seconds"], 3),
        "extra_peak_mb": round(extra, 1),
        f"extra_peak_mb_at_{short}_epochs": round(extra_short, 1),
        # What the trace holds at the end of each run, by tier: the summaries grow with the run
        # (every step's, as the issue asks), the window and the checkpoints have budgets.
        "trace_held_mb": ours["held_mb"],
        f"trace_held_mb_at_{short}_epochs": runs["gradstep_short"]["held_mb"],
        "recompute_median_ms": round(ours["recompute_median_ms"] or 0.0, 2),
        "checkpoints": ours["checkpoints"],
        "checkpoint_interval": ours["checkpoint_interval"],
        "window_steps": ours["window"],
        "parity": ours["parity"],
        "targets": "time_ratio <= 1.3, extra_peak_mb <= 150 and not above the short run's, recompute <= 50 ms",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
