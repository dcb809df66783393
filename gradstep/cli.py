"""The command line: ``gradstep list``, ``gradstep check``, ``gradstep SCENARIO`` and ``gradstep open FILE``.

Exit codes: 0 parity, 1 divergence (or the scenario's own code failed), 2 bad
input (unknown scenario, broken scenario file, a function that returns what
gradstep cannot use, bad option), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from gradstep import __version__
from gradstep.heap import map_big_blocks

EXIT_PARITY, EXIT_DIVERGED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class ScenarioGroup(click.Group):
    """A group where an unknown first word is a scenario to open: ``gradstep fizzbuzz``."""

    def invoke(self, ctx: click.Context) -> Any:
        """Ctrl-C ends with 130, as a shell reports it (click's own "Aborted!" exits 1); a file being saved
        is left as it was, its temporary removed."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            Console(stderr=True, soft_wrap=True).print("gradstep: interrupted", highlight=False)
            sys.exit(EXIT_INTERRUPTED)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "open", self.commands["open"], args
        return super().resolve_command(ctx, args)


@click.group(cls=ScenarioGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradstep")
def main() -> None:
    """Step a NumPy and a PyTorch training loop in lockstep and see where they part.

    \b
    gradstep SCENARIO            open a scenario (a bundled name or a .py file)
    gradstep check SCENARIO      run it headless: report, exit 0 on parity, 1 on divergence
    gradstep open FILE           reopen a saved session (check --save, or ctrl+s), read-only
    gradstep list                the bundled scenarios

    Scenario files are Python and run with your rights: open only files you trust.
    On the CPU, torch runs on one thread unless OMP_NUM_THREADS is set.
    """
    map_big_blocks()  # model-sized arrays come and go every step: freed, they go back to the system


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that runs a scenario."""
    options = [
        click.argument("scenario"),
        click.option("--variant", "-v", help="Variant to run (default: the scenario's, usually as-posted)."),
        click.option("--device", default="cpu", show_default=True, help="Where the torch side runs: cpu or cuda."),
        click.option("--dtype", type=click.Choice(["float32", "float64"]),
                     help="Torch dtype (default: the scenario's)."),
        click.option("--rtol", type=float, help="Relative tolerance (give --atol too)."),
        click.option("--atol", type=float, help="Absolute tolerance (give --rtol too)."),
        click.option("--tf32/--no-tf32", default=None,
                     help="On CUDA, allow or forbid TF32 in matmuls and convolutions (default: torch's setting "
                          "as it is; the state is reported)."),
        click.option("--hex", "hex_bits", is_flag=True, help="Show the exact bits instead of decimals."),
        click.option("--memory", "memory_mb", type=float, metavar="MIB",
                     help="What the trace may hold: summaries, checkpoints and the window of recent full "
                          "tensors (default 72). Less: a smaller --save file and more steps recomputed."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_engine(scenario: str, variant: str | None, device: str, dtype: str | None, rtol: float | None,
                 atol: float | None, tf32: bool | None, patch_file: str | None = None,
                 memory_mb: float | None = None) -> Any:
    """Load the scenario (and patches) and make its engine; every bad input ends here with exit 2."""
    from gradstep.kernel import warm_up

    warm_up()  # the comparison kernel loads on its own thread while torch and the scenario load here
    from gradstep.engine import Engine, EngineError
    from gradstep.loader import LoadError, load_scenario
    from gradstep.patch import PatchError, load_file, patched_scenario
    from gradstep.sides import ScenarioError

    if (rtol is None) != (atol is None):
        raise click.UsageError("--rtol and --atol must be given together")
    if rtol is not None:
        from gradstep.compare import check_tolerances

        try:
            check_tolerances(rtol, atol)
        except ValueError as error:
            raise click.UsageError(f"--{error}") from None
    _cpu_thread_policy(device)
    try:
        loaded = load_scenario(scenario, variant)
        patches = load_file(patch_file) if patch_file else []
        engine = Engine(patched_scenario(loaded, patches), device=device, dtype=dtype, rtol=rtol, atol=atol,
                        tf32=tf32, memory_mb=memory_mb)
        engine.base_scenario, engine.patches, engine.patch_file = loaded, patches, patch_file
        return engine
    except PatchError as error:
        _fail(f"{patch_file}: {error}")
    except (LoadError, EngineError, ScenarioError) as error:  # ScenarioError: data, init, model or mapping
        _fail(str(error))


def _cpu_thread_policy(device: str) -> None:
    """One torch thread on the CPU unless OMP_NUM_THREADS says otherwise.

    Lockstep alternates tiny NumPy and torch operations: torch's idle worker
    threads spin on the cores NumPy needs, which made steps 5 to 30 times slower
    on small machines. Results stay deterministic for a given thread count.
    """
    import os

    if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)


def engine_patches(engine: Any) -> list[str]:
    """Labels of the patches in force, for the report (and a line on stderr so it is never missed)."""
    labels = [p.label for p in getattr(engine, "patches", [])]
    if labels:
        from gradstep.safe_text import printable

        Console(stderr=True, soft_wrap=True).print(printable(f"patches in force: {', '.join(labels)}"),
                                                   highlight=False, markup=False)
    return labels


def _fail(message: str) -> None:
    # soft_wrap: a message is one line however narrow the terminal, so it can be grepped.
    from gradstep.safe_text import printable

    Console(stderr=True, soft_wrap=True).print(f"[bold red]gradstep:[/] {escape(printable(message, lines=True))}",
                                               highlight=False)
    sys.exit(EXIT_BAD_INPUT)


@main.command("new")
@click.argument("name")
@click.option("--pieces", is_flag=True,
              help="Each side as forward, loss, backward and update functions, instead of one step function "
                   "(your loop body as written).")
def new_command(name: str, pieces: bool) -> None:
    """Write NAME.py: a commented scenario that runs as it is; paste your loop bodies into it."""
    import re
    from pathlib import Path

    stem = name.removesuffix(".py")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", Path(stem).name):
        _fail(f"{name!r} is not a usable scenario name (letters, digits, _ and -)")
    target = Path(f"{stem}.py")
    if target.exists():
        _fail(f"{target} exists already; nothing written")
    template = (Path(__file__).parent / "templates" / ("pieces.py" if pieces else "step.py")).read_text()
    target.write_text(template.replace("__NAME__", Path(stem).name))
    Console().print(f"wrote {target}: try `gradstep check {target}` and `gradstep {target}`", highlight=False)


@main.command("serve")
@click.argument("scenario")
@click.option("--variant", "-v", help="Variant to open (default: the scenario's).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--public", is_flag=True, help="Allow an address other than loopback (patches then run code here).")
@click.option("--present", is_flag=True, help="Open every session in presentation mode (P switches).")
def serve_command(scenario: str, variant: str | None, host: str, port: int, public: bool, present: bool) -> None:
    """Serve the app in a browser (each visitor gets their own session), on 127.0.0.1 by default."""
    _check_scenario(scenario, variant)  # before anything listens: a typo is a message, not a server
    if not _is_loopback(host) and not public:
        _fail(f"{host} is not a loopback address: anyone who reaches it can run code on this machine "
              "through patches. Add --public to mean it.")
    if not _is_loopback(host):
        Console(stderr=True, soft_wrap=True).print(
            f"[bold yellow]warning:[/] serving on {host}: every visitor can apply patches, which run Python "
            "code on this machine with your rights.")
    build_server(scenario, variant, host, port, present).serve()


def _check_scenario(scenario: str, variant: str | None) -> None:
    """The scenario and variant exist and load (exit 2 if not), without building an engine."""
    from gradstep.loader import LoadError, load_scenario

    try:
        load_scenario(scenario, variant)
    except LoadError as error:
        _fail(str(error))


def build_server(scenario: str, variant: str | None, host: str, port: int, present: bool = False) -> Any:
    """A textual-serve server that runs `gradstep SCENARIO` for each browser session."""
    import shlex

    from textual_serve.server import Server

    command = [sys.executable, "-m", "gradstep", scenario, *(["--variant", variant] if variant else []),
               *(["--present"] if present else [])]
    return Server(shlex.join(command), host=host, port=port, title=f"gradstep {scenario}")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.command("list")
def list_command() -> None:
    """The bundled scenarios, their summaries and variants."""
    from rich.table import Table

    from gradstep.loader import LoadError, list_scenarios
    from gradstep.safe_text import Printable

    try:
        scenarios = list_scenarios()
    except LoadError as error:
        _fail(str(error))
    table = Table("scenario", "summary", "variants")
    for s in scenarios:
        variants = ", ".join(f"{name}{' (default)' if name == s.default_variant else ''}" for name in s.variants)
        table.add_row(s.name, s.summary, variants)
    Console().print(Printable(table))


@main.command("check")
@run_options
@click.option("--steps", type=click.IntRange(min=1), help="Run this many steps.")
@click.option("--epochs", type=click.IntRange(min=1), help="Run this many epochs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
@click.option("--patch", "patch_file", type=click.Path(dir_okay=False),
              help="Apply the patches in this file (as saved by the app) before running.")
@click.option("--save", "save_file", type=click.Path(dir_okay=False),
              help="Save the session to this file after the run, to reopen with `gradstep open FILE`.")
def check_command(scenario: str, variant: str | None, device: str, dtype: str | None, rtol: float | None,
                  atol: float | None, tf32: bool | None, hex_bits: bool, memory_mb: float | None, steps: int | None,
                  epochs: int | None, as_json: bool, patch_file: str | None, save_file: str | None) -> None:
    """Run SCENARIO headless and report; exit 0 on parity, 1 on divergence, 2 on bad input.

    --patch FILE runs code from FILE (patches are Python): use only files you trust.
    """
    if steps is not None and epochs is not None:
        raise click.UsageError("give --steps or --epochs, not both")
    engine = build_engine(scenario, variant, device, dtype, rtol, atol, tf32, patch_file, memory_mb)
    patches = engine_patches(engine)
    result = _run_with_progress(engine, _steps_to_run(engine, steps, epochs))
    contract = _contract_error(result)
    if contract is not None and result.steps == 0:
        _fail(str(contract))  # nothing ran: the scenario is wrong, like a file that does not load
    if as_json:
        from gradstep.report import to_json

        click.echo(json.dumps(to_json(engine, result, patches=patches)))
    else:
        from gradstep.report import print_report

        print_report(Console(), engine, result, hex_bits=hex_bits, patches=patches)
    if save_file is not None:
        _save_session(engine, result, save_file)
    if contract is not None:
        _fail(str(contract))  # after the report of the steps that ran
    parity = result.parity
    # A function that returned what the contract does not allow is bad input, like a broken file.
    broke_contract = result.error is not None and result.error.broke_contract
    del engine, result  # the last references: the device memory they hold can go back
    _release_device_memory()
    sys.exit(EXIT_PARITY if parity else EXIT_BAD_INPUT if broke_contract else EXIT_DIVERGED)


def _steps_to_run(engine: Any, steps: int | None, epochs: int | None) -> int:
    """--steps or --epochs, at most the scenario's own (its epochs times its batches), said so when cut."""
    total = engine.total_steps
    asked = steps if steps is not None else None if epochs is None else epochs * engine.steps_per_epoch
    if asked is None:
        return total
    if asked > total:
        what = f"--steps {steps}" if steps is not None else f"--epochs {epochs}"
        Console(stderr=True, soft_wrap=True).print(
            f"gradstep: {what} is more than the scenario runs: {total} steps ({engine.scenario.epochs} epoch(s) of "
            f"{engine.steps_per_epoch}); running those {total}", highlight=False, markup=False)
    return min(asked, total)


def _contract_error(result: Any) -> Any:
    """The run's error if the scenario itself is wrong (exit 2), else None."""
    from gradstep.sides import ContractError

    return result.error if isinstance(result.error, ContractError) else None


def _save_session(engine: Any, result: Any, path: str) -> None:
    """``check --save``: write the session and say where on stderr (the report owns stdout)."""
    from gradstep.safe_text import printable
    from gradstep.session_file import SessionFileError, save

    try:
        saved = save(engine, path, result)
    except SessionFileError as error:
        _fail(str(error))
    err = Console(stderr=True, soft_wrap=True)
    for note in saved.notes:
        err.print(printable(f"session: {note}"), highlight=False, markup=False)
    err.print(printable(f"session saved to {saved.path} ({saved.size} bytes); reopen it with: "
                        f"gradstep open {saved.path}"), highlight=False, markup=False)


def _release_device_memory() -> None:
    from gradstep.device import release_device_memory

    release_device_memory()


def _run_with_progress(engine: Any, steps: int) -> Any:
    """Run, with a progress bar on stderr once the run has taken more than a second."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    started = time.monotonic()
    bar: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if done % 64 and done != total:
            return  # keep the per-step cost negligible
        if "p" not in bar:
            if time.monotonic() - started < 1.0:
                return
            p = Progress(TextColumn("stepping"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                         console=Console(stderr=True), transient=True)
            p.start()
            bar["p"], bar["task"] = p, p.add_task("steps", total=total)
        bar["p"].update(bar["task"], completed=done)

    try:
        return engine.run(steps=steps, progress=progress)
    finally:
        if "p" in bar:
            bar["p"].stop()


@main.command("open")
@run_options
@click.option("--patch", "patch_file", type=click.Path(dir_okay=False),
              help="Apply the patches in this file (as saved by the app) before opening.")
@click.option("--present", is_flag=True, help="Open in presentation mode, for a projector (P switches).")
@click.option("--report", "as_report", is_flag=True, help="A saved session: print its report instead of opening it.")
@click.option("--json", "as_json", is_flag=True, help="A saved session: print its report as `check --json` does.")
def open_command(scenario: str, variant: str | None, device: str, dtype: str | None, rtol: float | None,
                 atol: float | None, tf32: bool | None, hex_bits: bool, memory_mb: float | None,
                 patch_file: str | None, present: bool, as_report: bool, as_json: bool) -> None:
    """Open SCENARIO in the debugger, on step 0 before any update; or a saved session FILE, read-only.

    A saved session (`gradstep check --save FILE`, or ctrl+s in the app) is recognised by its content. It
    never runs code, so it is safe to open one from someone else; the scenario source inside is shown, not run.

    --patch FILE runs code from FILE (patches are Python): use only files you trust.
    """
    if _is_saved_session(scenario):
        running = {"--variant": variant, "--device": device != "cpu" or None, "--dtype": dtype, "--rtol": rtol,
                   "--atol": atol, "--tf32/--no-tf32": tf32, "--patch": patch_file, "--memory": memory_mb}
        given = [name for name, value in running.items() if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)}: not for a saved session, which opens as it was recorded")
        _open_recorded(scenario, hex_bits, present, "json" if as_json else "rich" if as_report else None)
        return
    if as_report or as_json:
        raise click.UsageError("--report and --json are for a saved session; for a scenario, use `gradstep check`")
    _run_app(build_engine(scenario, variant, device, dtype, rtol, atol, tf32, patch_file, memory_mb), hex_bits,
             present)
    _release_device_memory()  # the app and its engine are gone: the device memory they held can go back


def _run_app(engine: Any, hex_bits: bool, present: bool) -> None:
    """The debugger on ``engine`` (a live one, or a saved session's read-only run)."""
    from gradstep.tui import create_app

    try:
        app = create_app(engine, hex_bits=hex_bits, user_keymap=True, present=present)
    except ValueError as error:  # a broken keymap file
        _fail(str(error))
    app.run()
    code = getattr(app, "return_code", None)
    if code:  # ended by SIGTERM or SIGHUP: 128 + the signal, as a shell reports it
        sys.exit(code)


def _is_saved_session(target: str) -> bool:
    """A saved session by its content (a zip with the manifest), or a damaged one by its name."""
    from pathlib import Path

    from gradstep.session_zip import SUFFIX, looks_like_session  # light: no torch before it is needed

    path = Path(target)
    return path.is_file() and (looks_like_session(path) or path.suffix == SUFFIX)


def _open_recorded(path: str, hex_bits: bool, present: bool, report: str | None) -> None:
    """A saved session, read-only: in the app, or its ``report`` ("rich" or "json"; exit 0 on parity, 1 on
    divergence, as `check` would have)."""
    from gradstep.recorded import RecordedRun
    from gradstep.report import print_report, to_json
    from gradstep.safe_text import printable
    from gradstep.session_file import SessionFileError

    try:
        run = RecordedRun.open(path)
    except SessionFileError as error:
        _fail(str(error))
    if report is not None:
        Console(stderr=True, soft_wrap=True).print(printable(run.describe()), highlight=False, markup=False)
        result = run.result()
        patches = engine_patches(run)
        if report == "json":
            click.echo(json.dumps(to_json(run, result, patches=patches)))
        else:
            print_report(Console(), run, result, hex_bits=hex_bits, patches=patches)
        sys.exit(EXIT_PARITY if result.parity else EXIT_DIVERGED)
    _run_app(run, hex_bits, present)
