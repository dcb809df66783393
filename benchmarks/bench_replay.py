"""Benchmark: replaying fizzbuzz from step 0 after a patch, against a bare loop of the same steps.

    python benchmarks/bench_replay.py [--steps 14000] [--patches all|loss]

What the debugger does when you apply a patch at step N: check the patch on
step N's inputs, then replay deterministically from step 0 to step N with it in
force, and build the frame it shows (:meth:`gradstep.tui.patching.PatchSession.apply`,
which is Textual-free). ``--patches all`` applies the thread's three fixes to
``fizzbuzz --variant as-posted`` one after the other and times the last one (the
replay is then the fixed run, in parity); ``--patches loss`` times the torch loss
fix alone (the replay still diverges at step 0, so every step also measures its
local error). The bare loop (``bench_check.bare_loop``) calls the same NumPy and
torch functions for the same steps, recording and comparing nothing. Each side
runs in its own subprocess; the ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

STEPS_PER_EPOCH = 14  # fizzbuzz: 900 training numbers in minibatches of 64

# The thread's fixes, as edits of the as-posted source (what a user types in the editor).
FIXES = {
    "torch.loss": [("error.pow(2).sum()", "error.pow(2).sum() / 2"),
                   ("error.detach().mean()", "(error.detach() ** 2).mean()")],
    "numpy.backward": [("hiddenerror = outerror.dot(", "hiddenerror = outgrad.dot(")],
    "torch.update": [("    w1.grad.zero_()\n", "    w1.grad.zero_()\n    b1.grad.zero_()\n")],
}


def replay_child(steps: int, which: str) -> dict:
    from gradstep.engine import Engine
    from gradstep.loader import load_scenario
    from gradstep.patch import Patch, source_of
    from gradstep.tui.session import Debugger

    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp()  # the session saves the patches: not in the user's state
    engine = Engine(load_scenario("fizzbuzz", "as-posted"))
    engine.run(steps=1)  # at step 0, as after one press of `n`
    debugger = Debugger(engine)
    session = debugger.patches
    targets = list(FIXES) if which == "all" else ["torch.loss"]
    for i, target in enumerate(targets):
        source = source_of(session.base, target, session.history)
        for old, new in FIXES[target]:
            source = source.replace(old, new, 1)
        last = i == len(targets) - 1
        view = steps - 1 if last else 0
        started = time.perf_counter()
        outcome = session.apply(debugger, Patch(target, source), view)
        seconds = time.perf_counter() - started
        assert outcome.kind == "applied", outcome.message
    d = debugger.engine.first_divergence
    return {"seconds": seconds, "steps": debugger.engine.next_step,
            "first_divergence": None if d is None else [d.step, d.tensor]}


def bare_child(steps: int, which: str) -> dict:
    from bench_check import bare_loop

    variant = "fixed" if which == "all" else "as-posted"
    return bare_loop("fizzbuzz", variant, max(1, steps // STEPS_PER_EPOCH))


def measure(mode: str, steps: int, which: str) -> dict:
    from bench_check import run_child

    return run_child([sys.executable, __file__, "--child", mode, "--steps", str(steps), "--patches", which])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=14000, help="replay to this many steps (a multiple of 14)")
    parser.add_argument("--patches", choices=["all", "loss"], default="all")
    parser.add_argument("--child", choices=["replay", "bare"])
    args = parser.parse_args()
    if args.child:
        out = (replay_child if args.child == "replay" else bare_child)(args.steps, args.patches)
        print(json.dumps(out))
        return
    bare = measure("bare", args.steps, args.patches)
    replay = measure("replay", args.steps, args.patches)
    print(json.dumps({
        "scenario": "fizzbuzz (as-posted) with "
                    + ("the thread's three fixes" if args.patches == "all" else "the torch loss fix"),
        "steps": replay["steps"],
        "bare_steps": bare["steps"],
        "bare_seconds": round(bare["seconds"], 3),
        "replay_seconds": round(replay["seconds"], 3),
        "ratio": round(replay["seconds"] / bare["seconds"], 3),
        "first_divergence_after": replay["first_divergence"],
    }, indent=2))


if __name__ == "__main__":
    main()
