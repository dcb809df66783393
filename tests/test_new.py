"""`gradstep new NAME`: a scenario file that runs as it is."""

import subprocess
import sys

from click.testing import CliRunner

from gradstep.cli import main
from gradstep.engine import Engine
from gradstep.loader import load_scenario


def test_the_pieces_template_runs_as_generated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, ["new", "mine", "--pieces"])
    assert done.exit_code == 0 and (tmp_path / "mine.py").is_file()
    fixed = Engine(load_scenario(str(tmp_path / "mine.py"), "fixed")).run()
    assert fixed.parity and fixed.steps == 20
    posted = Engine(load_scenario(str(tmp_path / "mine.py"), "as-posted")).run()
    assert (posted.first_divergence.step, posted.first_divergence.tensor) == (0, "grad w1")
    assert load_scenario(str(tmp_path / "mine.py")).name == "mine"


def test_the_step_template_runs_as_generated_and_keeps_its_missing_zero_grad(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, ["new", "mine"])
    assert done.exit_code == 0 and "def numpy_step(weights, batch, hp, state):" in (tmp_path / "mine.py").read_text()
    scenario = load_scenario(str(tmp_path / "mine.py"), "fixed")
    assert scenario.numpy.step is not None and scenario.torch.step is not None
    fixed = Engine(scenario)
    assert fixed.run().parity and fixed.next_step == 20
    # The activation gradient the NumPy step reports is recorded on the torch side too.
    assert {"grad out", "grad w1", "h", "out"} <= set(fixed.record(19).torch)
    posted = Engine(load_scenario(str(tmp_path / "mine.py"), "as-posted"))
    posted.run(steps=4)
    assert (posted.first_divergence.step, posted.first_divergence.tensor) == (1, "grad w1")


def test_check_on_the_generated_file_exits_as_documented(tmp_path):
    subprocess.run([sys.executable, "-m", "gradstep", "new", "demo"], cwd=tmp_path, check=True, capture_output=True)
    check = [sys.executable, "-m", "gradstep", "check", "demo.py"]
    assert subprocess.run([*check, "--variant", "fixed"], cwd=tmp_path, capture_output=True).returncode == 0
    assert subprocess.run(check, cwd=tmp_path, capture_output=True).returncode == 1


def test_new_never_overwrites_and_refuses_bad_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text("# mine\n")
    again = CliRunner().invoke(main, ["new", "mine"])
    assert again.exit_code == 2 and "exists already" in again.output
    assert (tmp_path / "mine.py").read_text() == "# mine\n"
    bad = CliRunner().invoke(main, ["new", "1 bad name"])
    assert bad.exit_code == 2 and "not a usable scenario name" in bad.output
