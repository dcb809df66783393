"""Benchmark: one step press in the debugger app, from the key to the screen update.

    python benchmarks/bench_tui.py [--scenario fizzbuzz] [--variant as-posted] [--steps 60] [--size 160x48]

Drives the app built by the CLI's factory through Textual's pilot (headless).
For each press of ``n`` it measures, on the app's own clock:

- total: the key press until the first screen update (the compositor's
  output, ``App._display``) after the new frame was handed to the widgets;
- engine: the part spent in the engine worker (``Debugger.forward``:
  stepping both sides, or reading an old step from the trace);
- ui: total minus engine: messages, formatting the visible cells, layout,
  the loss plot, rendering.

Two passes: new steps at the frontier, then stepping forward again through
the same steps after going back (read from the trace, never replayed). The
target (issue #3) is a median total <= 50 ms for a single step on fizzbuzz.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time


async def measure(scenario: str, variant: str | None, steps: int, size: tuple[int, int]) -> dict[str, list[float]]:
    from gradstep.engine import Engine
    from gradstep.loader import load_scenario
    from gradstep.tui import create_app

    app = create_app(Engine(load_scenario(scenario, variant)))
    displays: list[float] = []
    shown: list[float] = []
    engine_times: list[float] = []
    display = app._display

    def timed_display(screen, renderable):
        if renderable is not None:
            displays.append(time.perf_counter())
        return display(screen, renderable)

    app._display = timed_display
    forward = app.debugger.forward

    def timed_forward(view):
        started = time.perf_counter()
        try:
            return forward(view)
        finally:
            engine_times.append(time.perf_counter() - started)

    app.debugger.forward = timed_forward
    results: dict[str, list[float]] = {}
    async with app.run_test(size=size) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        show_frame = app.main.show_frame

        def timed_show(frame, error):
            show_frame(frame, error)
            shown.append(time.perf_counter())

        app.main.show_frame = timed_show

        async def press_n(expected: int) -> float:
            shown.clear()
            started = time.perf_counter()
            await pilot.press("n")
            while app.frame is None or app.frame.step != expected or not shown:
                await asyncio.sleep(0.0002)
            while not any(t > shown[-1] for t in displays):
                await asyncio.sleep(0.0002)
            return next(t for t in displays if t > shown[-1]) - started

        for name in ("new steps", "old steps"):
            totals, engine_times[:] = [], []
            start = app.frame.step
            for i in range(steps):
                displays.clear()
                totals.append(await press_n(start + 1 + i))
            results[f"{name}: total"] = totals
            results[f"{name}: engine"] = list(engine_times)
            results[f"{name}: ui"] = [t - e for t, e in zip(totals, engine_times, strict=True)]
            if name == "new steps":  # go back through the trace for the second pass
                await pilot.press("g")
                await pilot.press(*str(start + 1), "enter")
                while app.frame.step != start + 1 or app.busy:
                    await asyncio.sleep(0.001)
                await pilot.pause()
        app.exit()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="fizzbuzz")
    parser.add_argument("--variant", default=None, help="default: the scenario's (as-posted)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--size", default="160x48", help="terminal size, WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    results = asyncio.run(measure(args.scenario, args.variant, args.steps, (width, height)))
    import torch

    threads = {k: os.environ.get(k, "-") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(f"{args.scenario} ({args.variant or 'default variant'}), {args.steps} presses of n per pass, "
          f"{width}x{height}; torch threads {torch.get_num_threads()}, {threads}")
    print(f"{'':24} {'median ms':>10} {'p90 ms':>10} {'max ms':>10}")
    for name, values in results.items():
        ms = sorted(v * 1000 for v in values)
        p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
        print(f"{name:24} {statistics.median(ms):10.1f} {p90:10.1f} {ms[-1]:10.1f}")
    median = statistics.median(results["new steps: total"]) * 1000
    print(f"single step on {args.scenario}, key to screen: median {median:.1f} ms "
          f"({'within' if median <= 50 else 'over'} the 50 ms target)")


if __name__ == "__main__":
    main()
