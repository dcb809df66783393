"""The command line for workshops and GPU boxes: --tf32/--no-tf32, --device, --present, memory handed back."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gradstep import cli


@pytest.fixture
def engine_options(monkeypatch) -> dict:
    """The keyword arguments the CLI builds its Engine with (the real Engine still runs)."""
    import gradstep.engine

    seen: dict = {}
    real = gradstep.engine.Engine

    def engine(*args, **options):
        seen.update(options)
        return real(*args, **options)

    monkeypatch.setattr(gradstep.engine, "Engine", engine)
    return seen


@pytest.fixture
def released(monkeypatch) -> list[bool]:
    calls: list[bool] = []
    monkeypatch.setattr("gradstep.device.release_device_memory", lambda: calls.append(True) or False)
    return calls


class FakeApp:
    def __init__(self, options: dict):
        self.options = options

    def run(self) -> None:
        self.options["ran"] = True


@pytest.fixture
def app_options(monkeypatch) -> dict:
    """What the app command passes to create_app; the app is not started."""
    seen: dict = {}

    def create_app(engine, **options):
        seen.update(options, engine=engine)
        return FakeApp(seen)

    monkeypatch.setattr("gradstep.tui.app.create_app", create_app)
    return seen


# ---- --tf32/--no-tf32 -----------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "tf32"), [([], None), (["--tf32"], True), (["--no-tf32"], False)])
def test_check_passes_the_tf32_choice_and_leaves_torch_alone_by_default(engine_options, released, flag, tf32):
    done = CliRunner().invoke(cli.main, ["check", "neuron", "--steps", "1", *flag])
    assert done.exit_code == 1, done.output  # as posted, neuron diverges
    assert engine_options["tf32"] is tf32
    assert "torch on cpu in float64;" in done.output  # on the CPU there is no TF32 state to report
    assert released == [True]


@pytest.mark.parametrize(("flag", "tf32"), [([], None), (["--tf32"], True), (["--no-tf32"], False)])
def test_the_app_command_passes_the_tf32_choice(engine_options, app_options, released, flag, tf32):
    done = CliRunner().invoke(cli.main, ["neuron", *flag])
    assert done.exit_code == 0, done.output
    assert engine_options["tf32"] is tf32 and app_options["ran"] and not app_options["present"]
    assert released == [True]  # after the app, with the engine dropped


def test_present_flag_opens_in_presentation_mode(app_options, released):
    done = CliRunner().invoke(cli.main, ["neuron", "--variant", "fixed", "--present"])
    assert done.exit_code == 0, done.output
    assert app_options["present"] is True


@pytest.mark.parametrize("command", [["check"], []])
def test_cuda_without_cuda_is_a_clear_message_and_exit_2(app_options, command):
    done = CliRunner().invoke(cli.main, [*command, "neuron", "--device", "cuda", "--no-tf32"])
    assert done.exit_code == 2
    assert "--device cuda: CUDA is not available on this machine" in done.output
    assert "Traceback" not in done.output and "ran" not in app_options


def test_tf32_state_is_reported_on_cuda():
    """What check's report and the status line say when TF32 has a state (CUDA), and that the CPU says none."""
    from rich.console import Console

    from gradstep.engine import Engine
    from gradstep.loader import load_scenario
    from gradstep.report import print_report, to_json
    from gradstep.tui.frame import INITIAL, PhaseMap, build_frame
    from gradstep.tui.presenter import status_view

    engine = Engine(load_scenario("neuron", "fixed"))
    result = engine.run(steps=1)
    assert engine.tf32 is None and to_json(engine, result)["tf32"] is None
    frame = build_frame(engine, INITIAL, PhaseMap())
    assert status_view(frame).where == "cpu float64"
    engine.tf32 = False  # as Engine(device="cuda", tf32=False) leaves it
    console = Console(record=True, width=200)
    print_report(console, engine, result)
    assert "TF32 off" in console.export_text()
    assert status_view(frame.with_(device="cuda", tf32=True)).where == "cuda float64 TF32 on"


def test_serve_can_open_every_session_presenting():
    server = cli.build_server("neuron", "fixed", "127.0.0.1", 8123, True)
    assert server.command.endswith("-m gradstep neuron --variant fixed --present")
