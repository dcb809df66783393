"""Benchmark: gradstep on models of real sizes, every ratio against a bare loop in the same run.

    python benchmarks/bench_scale.py [--models fizzbuzz,mnist,wide,linear2048] [--repeat 3] [--scale 1]
                                     [--no-replay] [--no-tui] [--timeout 90] [--json]

The models (synthetic data, the same math on both sides unless said otherwise):

- ``fizzbuzz``: the bundled thread's fixed variant, 10-100-4, batch 64;
- ``mnist``: ``tests/fixtures/relu_mlp.py`` variant ``mnist``, 784-256-10, batch 64;
- ``wide``: the same file's ``wide``, 784-1024-1024-10, batch 128;
- ``linear2048``: ``tests/fixtures/linear2048.py`` as posted, one 2048 x 2048 float32 layer,
  batch 8, whose NumPy gradient is 2048 times torch's: a divergence at step 0, so
  ``gradstep check`` diagnoses it, and the whole process counts that too (variant
  ``as-posted-long``: the same, with 160 steps to take the run's from).

A check that runs fewer steps than asked (a scenario too short) fails, rather than
set its steps against more of the bare loop's.

For each model, each measurement in a subprocess of its own (peak memory is the
process's ``ru_maxrss``), alternating bare / gradstep ``--repeat`` times, medians:

- ``bare``: the scenario's own NumPy and torch functions (pieces or step
  functions) in a plain loop through the runners' ``advance``, nothing recorded;
  then, in the same process from a fresh set-up, ``record``: the same steps with
  every tensor recorded in the NumPy side's names and layout (``Lockstep.step``),
  nothing compared: what recording alone costs; and once more, ``compare``: each
  recorded step's pairs through the comparison kernel (``PairSummarizer``, every
  element of every pair but the weights' ``before``, which the engine carries
  from the last ``after``), nothing else: no local re-run, referee or trace.
  What the design of comparing every element at every step costs at the least;
- ``check``: ``gradstep check MODEL --steps N``, in process through the CLI,
  report to /dev/null; the loop (``Engine.run``) and the whole process
  (imports, set-up, run, diagnosis, report) are timed apart, and set against
  the bare loop and the bare process (imports, set-up, loop);
- ``replay`` (unless ``--no-replay``): after one step of a variant with a bug, its
  fix applied at step N-1 as the app applies it (``PatchSession.apply``: checked,
  then replayed from step 0); the patched run does the model's own work, and is
  set against its bare loop;
- ``tui`` (unless ``--no-tui``): the app as ``gradstep MODEL`` builds it, headless
  (Textual's pilot): process start to the first frame on screen, then ``n``
  pressed a few times: key to screen, and key to idle (a step on a divergence
  starts the diagnosis, which a further press waits for; still busy after
  20 s, the table says so and presses no more).

A measurement past ``--timeout`` is killed and keeps what it had printed: a
check killed in its diagnosis still gives its loop and the peak at its end.

Extra peak memory is the check process's peak less the bare process's; it is
also printed over P + A, the model's parameters and one step's activations
(the NumPy side's weights and forward tensors). Torch and NumPy's BLAS run on
one thread each (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS = 1,
unless set); OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which some machines set for
old OpenBLAS builds and which slow a current one, are unset for the children, and
the header says which OpenBLAS kernel ran. Steps are capped so the default run
takes a few minutes on 2 cores; ``--scale 10`` runs ten times as many steps.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # before any import of numpy, torch or gradstep: the process's own start-up

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Model:
    title: str
    scenario: str
    variant: str
    steps: int  # the default cap
    # The replay: the variant a patch is applied to and its fixes {target: [(old, new), ...]}. The patched
    # run does the work of the model's own variant: it is set against that variant's bare loop.
    replay_variant: str
    fixes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def _fizzbuzz_fixes() -> dict[str, list[tuple[str, str]]]:
    from bench_replay import FIXES

    return FIXES


MODELS = {
    "fizzbuzz": Model("fizzbuzz 10-100-4, batch 64", "fizzbuzz", "fixed", 1400, "as-posted",
                      _fizzbuzz_fixes()),
    "mnist": Model("MLP 784-256-10, batch 64", str(FIXTURES / "relu_mlp.py"), "mnist", 300, "mnist-lr",
                   {"numpy.update": [(" + min(state[\"step\"] - 1, 1))", ")")]}),
    "wide": Model("MLP 784-1024-1024-10, batch 128", str(FIXTURES / "relu_mlp.py"), "wide", 30, "wide-lr",
                  {"numpy.update": [(" + min(state[\"step\"] - 1, 1))", ")")]}),
    "linear2048": Model("linear 2048x2048, batch 8, as-posted", str(FIXTURES / "linear2048.py"), "as-posted-long",
                        16, "as-posted-long", {"numpy.backward": [("/ len(batch[\"x\"])", "/ acts[\"out\"].size")]}),
}

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
IDLE_CAP_S = 20.0  # the app still busy this long after a press (a diagnosis): said so, no more presses


# ---- children: each measurement in a process of its own ----------------------------------------

def _lockstep(scenario: str, variant: str) -> Any:
    from gradstep.engine import TORCH_DTYPES, Lockstep
    from gradstep.loader import load_scenario

    loaded = load_scenario(scenario, variant)
    return Lockstep(loaded, "cpu", TORCH_DTYPES[loaded.dtype])  # the engine's own set-up


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_child(scenario: str, variant: str, steps: int) -> dict:
    """The scenario's own functions, step after step, nothing recorded or compared; then, in a fresh
    set-up of the same process, the same steps recorded (``Lockstep.step``), nothing compared; then
    recorded and every pair summarized by the kernel, nothing else."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pair = _lockstep(scenario, variant)
    started = time.perf_counter()
    for step in range(steps):
        pair.advance(step)
    out = {"loop_s": time.perf_counter() - started, "peak_mb": _peak_mb(), "setup_s": started - STARTED}
    del pair
    pair = _lockstep(scenario, variant)
    started = time.perf_counter()
    for step in range(steps):
        pair.step(step)
    out["record_s"] = time.perf_counter() - started
    out["model_bytes"] = _params_and_activations(pair, steps)
    del pair
    out["compare_s"] = _record_and_compare(scenario, variant, steps)
    return out


def _record_and_compare(scenario: str, variant: str, steps: int) -> float:
    """Seconds for ``steps`` recorded steps, each step's pairs summarized by the kernel (the kernel loaded
    and the summarizer made before the clock starts, on a step of a set-up of its own)."""
    import numpy as np

    from gradstep.compare import PairSummarizer, tolerance_for

    def pairs(record: Any) -> list[str]:
        return [k for k in record.numpy if k in record.torch and not k.startswith("before ")
                and np.size(record.numpy[k]) == np.size(record.torch[k])]

    first = _lockstep(scenario, variant).step(0)
    names = pairs(first)
    summarizer = PairSummarizer([int(np.size(first.numpy[k])) for k in names],
                                [tolerance_for(first.numpy[k].dtype, first.torch[k].dtype) for k in names])
    summarizer.summarize([first.numpy[k] for k in names], [first.torch[k] for k in names])
    del first
    pair = _lockstep(scenario, variant)
    started = time.perf_counter()
    for step in range(steps):
        record = pair.step(step)
        summarizer.summarize([record.numpy[k] for k in names], [record.torch[k] for k in names])
    return time.perf_counter() - started


def _params_and_activations(pair: Any, step: int) -> dict[str, int]:
    """The NumPy side's weights and one step's forward tensors, in bytes."""
    record = pair.step(step)
    sizes = {"params": 0, "activations": 0}
    for key, array in record.numpy.items():
        phase = pair.phase_of(key)
        if phase == "before":
            sizes["params"] += array.nbytes
        elif phase == "forward":
            sizes["activations"] += array.nbytes
    return sizes


def check_child(scenario: str, variant: str, steps: int) -> dict:
    """``gradstep check SCENARIO --variant V --steps N`` through the CLI, the run itself timed apart."""
    from gradstep import cli
    from gradstep.engine import Engine

    run = Engine.run
    timed: dict[str, float] = {}

    def timed_run(self: Engine, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return run(self, *args, **kwargs)
        finally:
            timed["loop_s"] = time.perf_counter() - started
            timed["steps_run"] = self.next_step
            emit({**timed, "peak_mb": _peak_mb()})  # what a run killed in its diagnosis still tells

    Engine.run = timed_run
    code: Any = None
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.main(["check", scenario, "--variant", variant, "--steps", str(steps)])
        except SystemExit as done:
            code = done.code
    if timed["steps_run"] != steps:  # the scenario runs fewer: a ratio against the bare loop's steps would lie
        raise SystemExit(f"{scenario} --variant {variant} runs {timed['steps_run']} steps, not {steps}")
    return {"loop_s": timed["loop_s"], "exit": code, "peak_mb": _peak_mb(),
            "report_s": time.perf_counter() - STARTED}


def replay_child(scenario: str, variant: str, steps: int, model: str) -> dict:
    """After one step, the model's fixes applied at step N-1 as the app applies them; the last one timed."""
    from gradstep.engine import Engine
    from gradstep.loader import load_scenario
    from gradstep.patch import Patch, source_of
    from gradstep.tui.session import Debugger

    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp()  # the session saves its patches: not in the user's state
    engine = Engine(load_scenario(scenario, variant))
    engine.run(steps=1)
    debugger = Debugger(engine)
    session = debugger.patches
    fixes = MODELS[model].fixes
    seconds = 0.0
    for i, (target, edits) in enumerate(fixes.items()):
        source = source_of(session.base, target, session.history)
        for old, new in edits:
            if old not in source:
                raise SystemExit(f"{model}: the fix of {target} does not apply: {old!r} is not in its source")
            source = source.replace(old, new, 1)
        view = steps - 1 if i == len(fixes) - 1 else 0
        started = time.perf_counter()
        outcome = session.apply(debugger, Patch(target, source), view)
        seconds = time.perf_counter() - started
        if outcome.kind != "applied":
            raise SystemExit(f"{model}: the patch was {outcome.kind}: {outcome.message}")
    fresh = debugger.engine
    return {"loop_s": seconds, "steps": fresh.next_step, "parity": fresh.first_divergence is None,
            "peak_mb": _peak_mb()}


def tui_child(scenario: str, variant: str, presses: int, size: tuple[int, int]) -> dict:
    """The app as the CLI builds it, headless: start-up to the first frame, then ``n`` key to screen."""
    return asyncio.run(_tui(scenario, variant, presses, size))


async def _tui(scenario: str, variant: str, presses: int, size: tuple[int, int]) -> dict:
    from gradstep.cli import _cpu_thread_policy, build_engine
    from gradstep.tui import create_app

    _cpu_thread_policy("cpu")
    app = create_app(build_engine(scenario, variant, "cpu", None, None, None, None))
    displays: list[float] = []
    shown: list[float] = []
    display = app._display

    def timed_display(screen: Any, renderable: Any) -> Any:
        if renderable is not None:
            displays.append(time.perf_counter())
        return display(screen, renderable)

    app._display = timed_display
    show_frame = app.main.show_frame

    def timed_show(frame: Any, error: Any) -> None:
        show_frame(frame, error)
        shown.append(time.perf_counter())

    app.main.show_frame = timed_show

    async def screen_after_frame() -> float:
        while not shown:
            await asyncio.sleep(0.0005)
        while not any(t > shown[-1] for t in displays):
            await asyncio.sleep(0.0005)
        return next(t for t in displays if t > shown[-1])

    async def idle() -> bool:
        """Wait for the app to have nothing running (a step's diagnosis included), up to IDLE_CAP_S."""
        given_up = time.perf_counter() + IDLE_CAP_S
        while app.busy:
            if time.perf_counter() > given_up:
                return False
            await asyncio.sleep(0.001)
        return True

    keys, idles = [], []
    async with app.run_test(size=size) as pilot:
        first = await screen_after_frame() - STARTED
        emit({"first_frame_s": first})
        still_busy = not await idle()
        for _ in range(0 if still_busy else presses):
            shown.clear()
            displays.clear()
            started = time.perf_counter()
            await pilot.press("n")
            keys.append(await screen_after_frame() - started)
            if not await idle():  # a further press would only queue behind it
                still_busy = True
                break
            idles.append(time.perf_counter() - started)
            emit({"first_frame_s": first, "key_to_screen_s": keys, "key_to_idle_s": idles})
        out = {"first_frame_s": first, "key_to_screen_s": keys, "key_to_idle_s": idles, "peak_mb": _peak_mb(),
               "still_busy_after_s": IDLE_CAP_S if still_busy else None}
        if still_busy:  # a worker thread cannot be stopped: leave without waiting for it
            emit({**out, "process_s": time.perf_counter() - STARTED})
            os._exit(0)
    return out


def emit(out: dict) -> None:
    """A result line; the last one a child printed is its result, even when it is killed later."""
    stdout = sys.__stdout__  # not the report's, which check_child sends nowhere
    stdout.write("\n" + json.dumps(out) + "\n")
    stdout.flush()


def child_main(args: argparse.Namespace) -> None:
    model = MODELS[args.model]
    variant = args.variant or model.variant
    if args.child == "bare":
        out = bare_child(model.scenario, variant, args.steps)
    elif args.child == "check":
        out = check_child(model.scenario, variant, args.steps)
    elif args.child == "replay":
        out = replay_child(model.scenario, variant, args.steps, args.model)
    else:
        width, height = (int(n) for n in args.size.split("x"))
        out = tui_child(model.scenario, variant, args.presses, (width, height))
    out["process_s"] = time.perf_counter() - STARTED
    emit(out)


# ---- the parent: alternating runs, medians, one table -----------------------------------------

def child_env() -> dict[str, str]:
    """One thread for torch and for NumPy's BLAS; OpenBLAS left to pick its own kernel."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for name in THREAD_VARIABLES:
        env.setdefault(name, "1")
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # together, or not at all
        env.pop(name, None)
    return env


def measure(mode: str, model: str, steps: int, timeout: float, variant: str = "", presses: int = 0,
            size: str = "120x40") -> dict:
    """One child; its last line of output is its JSON result. Wall time and failure are the parent's."""
    cmd = [sys.executable, __file__, "--child", mode, "--model", model, "--steps", str(steps),
           "--presses", str(presses), "--size", size]
    if variant:
        cmd += ["--variant", variant]
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired as killed:
        # What it said before it was killed still counts (the loop of a run killed in its diagnosis).
        partial = _last_result(killed.stdout)
        return {**(partial or {}), "failed": f"timed out after {timeout:.0f} s", "timed_out": True}
    out = _last_result(done.stdout)
    if out is None or done.returncode not in (0, 1):  # check: 0 parity, 1 divergence
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"failed": f"exit {done.returncode}: {tail}"}
    out["wall_s"] = time.perf_counter() - started
    return out


def _last_result(stdout: str | bytes | None) -> dict | None:
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else (stdout or "")
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def blas_kernel() -> str:
    """Which OpenBLAS kernel NumPy runs and on how many threads, as a child sees it."""
    code = ("import numpy, ctypes\n"
            "lib = next((l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l.lower()), None)\n"
            "if lib is None: print('BLAS: not OpenBLAS')\n"
            "else:\n"
            "    so = ctypes.CDLL(lib)\n"
            "    name = next((n for n in ('scipy_openblas_get_corename64_', 'openblas_get_corename64_',\n"
            "                 'openblas_get_corename') if hasattr(so, n)), None)\n"
            "    threads = next((n for n in ('scipy_openblas_get_num_threads64_', 'openblas_get_num_threads64_',\n"
            "                    'openblas_get_num_threads') if hasattr(so, n)), None)\n"
            "    if name: getattr(so, name).restype = ctypes.c_char_p\n"
            "    core = getattr(so, name)().decode() if name else '?'\n"
            "    n = getattr(so, threads)() if threads else '?'\n"
            "    print(f'OpenBLAS kernel {core}, {n} thread(s)')\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(),
                              timeout=60)
        return done.stdout.strip() or done.stderr.strip().splitlines()[-1]
    except (subprocess.SubprocessError, IndexError):
        return "BLAS: unknown"


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if key in r and r[key] is not None]
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def alternate(modes: list[tuple[str, dict]], repeat: int) -> dict[str, list[dict]]:
    """Run each (mode, kwargs) ``repeat`` times, the order turned round every repeat (A B, B A, ...)."""
    runs: dict[str, list[dict]] = {name: [] for name, _ in modes}
    for r in range(repeat):
        order = modes if r % 2 == 0 else modes[::-1]
        for name, kwargs in order:
            runs[name].append(measure(**kwargs))
    return runs


def bench_model(name: str, args: argparse.Namespace) -> dict:
    model = MODELS[name]
    steps = max(1, round(model.steps * args.scale))
    common = {"model": name, "steps": steps, "timeout": args.timeout}
    modes = [("bare", {"mode": "bare", **common}), ("check", {"mode": "check", **common})]
    if args.replay:
        modes.append(("replay", {"mode": "replay", **common, "variant": model.replay_variant}))
    if args.tui:
        modes.append(("tui", {"mode": "tui", **common, "presses": args.presses, "size": args.size}))
    runs = alternate(modes, args.repeat)
    return summarize(name, steps, runs)


def summarize(name: str, steps: int, runs: dict[str, list[dict]]) -> dict:
    # A run killed by the time-out keeps what it measured before; its process time and peak are unknown.
    ok = {mode: [r for r in rs if "failed" not in r] for mode, rs in runs.items()}
    partial = {mode: [r for r in rs if "failed" not in r or r.get("timed_out")] for mode, rs in runs.items()}
    failures = {mode: f"{r['failed']} ({sum('failed' in x for x in rs)} of {len(rs)} runs)"
                for mode, rs in runs.items() for r in rs if "failed" in r}
    bare, check = ok["bare"], ok["check"]
    out: dict[str, Any] = {"model": name, "title": MODELS[name].title, "steps": steps, "failures": failures}
    out["bare_loop_s"] = _median(bare, "loop_s")
    out["record_loop_s"] = _median(bare, "record_s")
    out["compare_loop_s"] = _median(bare, "compare_s")
    out["check_loop_s"] = _median(partial["check"], "loop_s")
    # Whole processes, from the script's first line (imports included) to the end of their work.
    out["bare_process_s"] = _median([{"s": r["setup_s"] + r["loop_s"]} for r in bare], "s")
    out["check_process_s"] = _median(check, "process_s")
    out["check_exit"] = check[0]["exit"] if check else None
    out["check_timed_out"] = not check and any(r.get("timed_out") for r in runs["check"])
    out["record_ratio"] = _ratio(out["record_loop_s"], out["bare_loop_s"])
    out["compare_ratio"] = _ratio(out["compare_loop_s"], out["bare_loop_s"])
    out["loop_ratio"] = _ratio(out["check_loop_s"], out["bare_loop_s"])
    out["process_ratio"] = _ratio(out["check_process_s"], out["bare_process_s"])
    # (of a check killed in its diagnosis: the peak when its run ended, the failure says so)
    bare_peak, check_peak = _median(bare, "peak_mb"), _median(partial["check"], "peak_mb")
    out["bare_peak_mb"], out["check_peak_mb"] = bare_peak, check_peak
    out["extra_peak_mb"] = check_peak - bare_peak if bare_peak is not None and check_peak is not None else None
    sizes = bare[0]["model_bytes"] if bare else None
    out["params_mb"] = sizes["params"] / 2**20 if sizes else None
    out["activations_mb"] = sizes["activations"] / 2**20 if sizes else None
    model_mb = (out["params_mb"] or 0) + (out["activations_mb"] or 0)
    out["extra_over_model"] = _ratio(out["extra_peak_mb"], model_mb)
    if "replay" in ok:
        out["replay_s"] = _median(ok["replay"], "loop_s")
        out["replay_ratio"] = _ratio(out["replay_s"], out["bare_loop_s"])
        out["replay_parity"] = ok["replay"][0]["parity"] if ok["replay"] else None
    if "tui" in ok:
        tui = partial["tui"]
        out["tui_first_frame_s"] = _median(tui, "first_frame_s")
        out["bare_setup_s"] = _median(bare, "setup_s")
        keys = [k for r in tui for k in r.get("key_to_screen_s", [])]
        idles = [k for r in tui for k in r.get("key_to_idle_s", [])]
        out["tui_key_to_screen_s"] = statistics.median(keys) if keys else None
        out["tui_key_to_idle_s"] = statistics.median(idles) if idles else None
        out["tui_peak_mb"] = _median(tui, "peak_mb")
        out["tui_still_busy"] = any(r.get("still_busy_after_s") for r in tui)
    return out


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def _per_step(result: dict, key: str) -> float | None:
    """Milliseconds a step."""
    seconds = result[key]
    return None if seconds is None else 1000 * seconds / result["steps"]


def _check_process(result: dict) -> str:
    if result["check_process_s"] is None and result["check_timed_out"]:
        return "timed out"
    return _fmt(result["check_process_s"], ".1f", " s")


def print_table(results: list[dict], header: str) -> None:
    print(header)
    print()
    cols = (f"{'model':38} {'steps':>5} {'bare ms/step':>12} {'check ms/step':>13} {'loop ×':>7} "
            f"{'record ×':>8} {'+compare ×':>10} {'bare proc':>9} {'check proc':>10} {'proc ×':>7}")
    print(cols)
    for r in results:
        print(f"{r['title']:38} {r['steps']:>5} {_fmt(_per_step(r, 'bare_loop_s'), '.2f'):>12} "
              f"{_fmt(_per_step(r, 'check_loop_s'), '.2f'):>13} {_fmt(r['loop_ratio'], '.2f'):>7} "
              f"{_fmt(r['record_ratio'], '.2f'):>8} {_fmt(r['compare_ratio'], '.2f'):>10} "
              f"{_fmt(r['bare_process_s'], '.1f', ' s'):>9} "
              f"{_check_process(r):>10} {_fmt(r['process_ratio'], '.2f'):>7}")
    print()
    print(f"{'model':38} {'bare peak':>9} {'check peak':>10} {'extra':>9} {'P':>9} {'A':>9} {'extra/(P+A)':>11}")
    for r in results:
        print(f"{r['title']:38} {_fmt(r['bare_peak_mb'], '.0f', ' MB'):>9} "
              f"{_fmt(r['check_peak_mb'], '.0f', ' MB'):>10} "
              f"{_fmt(r['extra_peak_mb'], '.1f', ' MB'):>9} {_fmt(r['params_mb'], '.2f', ' MB'):>9} "
              f"{_fmt(r['activations_mb'], '.2f', ' MB'):>9} {_fmt(r['extra_over_model'], '.1f'):>11}")
    if any("replay_s" in r for r in results):
        print()
        print(f"{'replay after a patch':38} {'steps':>5} {'bare':>9} {'replay':>9} {'×':>6}  replayed run")
        for r in results:
            if "replay_s" in r:
                parity = {True: "parity", False: "diverges", None: "—"}[r["replay_parity"]]
                print(f"{r['title']:38} {r['steps']:>5} {_fmt(r['bare_loop_s'], '.2f', ' s'):>9} "
                      f"{_fmt(r['replay_s'], '.2f', ' s'):>9} {_fmt(r['replay_ratio'], '.2f'):>6}  {parity}")
    if any("tui_first_frame_s" in r for r in results):
        print()
        print(f"{'app (headless)':38} {'first frame':>11} {'bare set-up':>11} {'n: to screen':>12} "
              f"{'n: to idle':>10} {'peak':>8}")
        for r in results:
            if "tui_first_frame_s" in r:
                print(f"{r['title']:38} {_fmt(r['tui_first_frame_s'], '.2f', ' s'):>11} "
                      f"{_fmt(r['bare_setup_s'], '.2f', ' s'):>11} {_fmt(r['tui_key_to_screen_s'], '.3f', ' s'):>12} "
                      f"{_fmt(r['tui_key_to_idle_s'], '.3f', ' s'):>10} {_fmt(r['tui_peak_mb'], '.0f', ' MB'):>8}"
                      + (f"  (still busy {IDLE_CAP_S:.0f} s after a press)" if r["tui_still_busy"] else ""))
    failed = [(r["title"], mode, why) for r in results for mode, why in r["failures"].items()]
    if failed:
        print()
        for title, mode, why in failed:
            print(f"{title}: {mode} failed: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement, alternated; medians")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every model's steps (longer runs)")
    parser.add_argument("--replay", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--tui", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--presses", type=int, default=3, help="presses of n in the app, per run")
    parser.add_argument("--size", default="120x40", help="the app's terminal, WIDTHxHEIGHT")
    parser.add_argument("--timeout", type=float, default=90, help="seconds before a measurement counts as failed")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--child", choices=["bare", "check", "replay", "tui"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}: choose from {', '.join(MODELS)}")
    env = child_env()
    threads = ", ".join(f"{k}={env[k]}" for k in THREAD_VARIABLES)
    header = (f"gradstep bench_scale: {args.repeat} alternated runs each, medians; {threads}; {blas_kernel()}; "
              f"{os.cpu_count()} CPUs")
    started = time.perf_counter()
    results = [bench_model(name, args) for name in names]
    print_table(results, header)
    print(f"\n(the whole benchmark took {time.perf_counter() - started:.0f} s)")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
