"""Benchmark: is the verdict right on real sizes, and what does the precision referee cost?

    python benchmarks/bench_verdict.py [--only NAME ...] [--steps N]

Runs `gradstep check`'s engine on tutorial-style MLPs of our own (tests/fixtures/relu_mlp.py,
MNIST-shaped synthetic data) and on the kink fixture, each in its own subprocess with torch
on one thread as the CLI runs it, and prints for each: the verdict against the expected one,
the pairs found to be rounding only, how many steps the referee re-ran (and how many of them
needed torch re-run in float64, not only the NumPy side), and the referee's share of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# name: (scenario file, variant, steps or None for the scenario's own, expected parity)
CASES = {
    "mnist": (FIXTURES / "relu_mlp.py", "mnist", None, True),  # 784-256-10, batch 64, 2,000 steps, float32
    "wide": (FIXTURES / "relu_mlp.py", "wide", None, True),  # 784-1024-1024-10, batch 128, 300 steps
    "mnist-lr": (FIXTURES / "relu_mlp.py", "mnist-lr", 200, False),  # NumPy's rate 5% off from step 1
    "numpy32": (FIXTURES / "relu_mlp.py", "numpy32", None, True),  # NumPy float32, torch float64
    "relu-ge": (FIXTURES / "relu_mlp.py", "relu-ge", None, False),  # ReLU' = 1 at exact zeros
    "kink": (FIXTURES / "kink.py", "fixed", 2, True),  # pre-activations within rounding of the kink
}


def run_case(path: str, variant: str, steps: int | None) -> dict:
    import numpy as np
    import torch

    from gradstep.compare import Status
    from gradstep.engine import Engine
    from gradstep.loader import load_scenario

    torch.set_num_threads(1)
    engine = Engine(load_scenario(path, variant))
    started = time.perf_counter()
    result = engine.run(steps=steps)
    seconds = time.perf_counter() - started
    rounding = engine.trace.status == Status.ROUNDING
    full = sum(1 for r in engine.referee_reports.values() if any(not j.quick for j in r.judgements.values()))
    d = result.first_divergence
    return {
        "steps": result.steps, "parity": result.parity, "seconds": seconds,
        "referee_runs": engine.referee_runs, "referee_seconds": engine.referee_seconds,
        "full_reruns_in_last_64": full,
        "rounding_steps": int(rounding.any(axis=1).sum()), "rounding_cells": int(rounding.sum()),
        "rounding_tensors": sorted({engine.trace.keys[c] for c in np.flatnonzero(rounding.any(axis=0))}),
        "first_divergence": None if d is None else f"step {d.step} {d.tensor}: {d.decided_by()}",
        "rounding_summary": engine.rounding_summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(CASES), help="Run only these cases.")
    parser.add_argument("--steps", type=int, help="Cap every case at this many steps.")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, variant, steps = args.child
        print(json.dumps(run_case(path, variant, None if steps == "-" else int(steps))))
        return
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print(f"{'case':10} {'verdict':10} {'expected':9} {'steps':>6} {'s':>8} {'referee runs':>13} "
          f"{'referee share':>14} {'rounding steps':>15}")
    for name in args.only or CASES:
        path, variant, steps, expected = CASES[name]
        if args.steps is not None:
            steps = min(steps, args.steps) if steps else args.steps
        done = subprocess.run([sys.executable, __file__, "--child", str(path), variant, str(steps or "-")],
                              capture_output=True, text=True, env=env, cwd=ROOT)
        if done.returncode:
            print(f"{name:10} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        verdict = "PARITY" if r["parity"] else "DIVERGED"
        ok = "ok" if r["parity"] == expected else "WRONG"
        share = r["referee_seconds"] / r["seconds"] if r["seconds"] else 0.0
        print(f"{name:10} {verdict:10} {ok:9} {r['steps']:>6} {r['seconds']:>8.1f} "
              f"{r['referee_runs']:>6} ({100 * r['referee_runs'] / max(r['steps'], 1):4.1f}%) {100 * share:>13.1f}% "
              f"{r['rounding_steps']:>15}")
        if r["first_divergence"]:
            print(f"           first divergence: {r['first_divergence']}")
        if r["rounding_summary"]:
            print(f"           rounding in {', '.join(r['rounding_tensors'])}; first at {r['rounding_summary']}")


if __name__ == "__main__":
    main()
