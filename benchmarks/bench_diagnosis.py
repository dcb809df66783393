"""Benchmark: what a diagnosis costs, on a 4-million-element weight and on small models.

    python benchmarks/bench_diagnosis.py [--repeat 3]

The 2048 x 2048 float32 layer (tests/fixtures/big.py, as-posted: NumPy's
gradient misses its 2) is run two steps and diagnosed at its first divergence;
the target (issue 17 / issue 14) is under 10 s, with what the time budget left
out said in a "not checked" finding. The small planted scenarios show the
diagnosis's cost where nothing needs sampling. Torch runs on one thread, as the
CLI runs it. Each figure is the median of ``--repeat`` diagnoses of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    ("tests/fixtures/big.py", "as-posted", 2),
    ("tests/fixtures/planted/wild/mlp_sigmoid.py", "as-posted", 3),
    ("tests/fixtures/planted/wild/softmax_regression.py", "as-posted", 3),
    ("tests/fixtures/planted/wild/adam.py", "as-posted", 3),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)
    from gradstep.diagnosis import diagnose
    from gradstep.engine import Engine
    from gradstep.loader import load_scenario

    print(f"{'scenario':<48} {'run':>8} {'diagnosis':>10}  first finding; not checked")
    for path, variant, steps in CASES:
        started = time.perf_counter()
        engine = Engine(load_scenario(str(ROOT / path), variant))
        engine.run(steps=steps)
        ran = time.perf_counter() - started
        times, findings = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            findings = diagnose(engine)
            times.append(time.perf_counter() - started)
        skipped = [f.cause for f in findings if f.rule == "not-checked"]
        top = f"{findings[0].rule} {findings[0].side} {findings[0].function}" if findings else "none"
        print(f"{Path(path).stem + ':' + variant:<48} {ran:>7.2f}s {statistics.median(times):>9.2f}s  {top}"
              + (f"; {skipped[0]}" if skipped else ""))


if __name__ == "__main__":
    main()
