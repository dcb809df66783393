"""The command line, run as a user runs it: exit codes, the report, --json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def gradstep(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}  # a wide terminal: the report's lines stay whole
    return subprocess.run([sys.executable, "-m", "gradstep", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_version():
    done = gradstep("--version")
    assert done.returncode == 0
    from gradstep import __version__

    assert __version__ in done.stdout


def test_check_parity_exits_0_and_says_so(chaos_path):
    done = gradstep("check", chaos_path, "--variant", "fixed")
    assert done.returncode == 0, done.stderr
    assert "PARITY" in done.stdout
    assert "Drift" in done.stdout and "first out of tolerance at step" in done.stdout
    assert "besides the divergence" not in done.stdout


def test_drift_after_a_divergence_is_said_to_be_besides_it():
    done = gradstep("check", "fizzbuzz", "--variant", "as-posted", "--steps", "3")
    assert done.returncode == 1
    text = " ".join(done.stdout.split())
    assert "within tolerance locally, besides the divergence): first out of tolerance at step" in text


def test_check_divergence_exits_1_with_both_values(chaos_path):
    done = gradstep("check", chaos_path, "--variant", "as-posted", "--steps", "3")
    assert done.returncode == 1
    assert "First divergence: step 0" in done.stdout and "grad w" in done.stdout
    assert "numpy" in done.stdout and "torch" in done.stdout


def test_json_is_one_object_with_the_documented_fields(chaos_path):
    done = gradstep("check", chaos_path, "--variant", "as-posted", "--steps", "5", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert {"scenario", "variant", "steps", "parity", "first_divergence", "drift", "tensors", "final"} <= set(report)
    summary = (report["scenario"], report["variant"], report["steps"], report["parity"])
    assert summary == ("chaos", "as-posted", 5, False)
    first = report["first_divergence"]
    assert {"step", "tensor", "index", "numpy", "torch", "abs", "rel", "ulp"} <= set(first)
    assert first["numpy"] == 2 * first["torch"] and first["abs"] == abs(first["numpy"] - first["torch"])
    assert set(report["final"]) == {"numpy", "torch"}
    assert set(report["final"]["torch"]["weights"]) == {"w"}


def test_json_final_weights_round_trip_exactly(chaos_path):
    from gradstep.engine import Engine
    from gradstep.loader import load_scenario

    done = gradstep("check", chaos_path, "--variant", "fixed", "--json")
    report = json.loads(done.stdout)
    engine = Engine(load_scenario(chaos_path, "fixed"))
    engine.run()
    final = engine.final_state()
    assert report["final"]["numpy"]["weights"]["w"] == final["numpy"]["weights"]["w"].tolist()
    assert report["final"]["torch"]["loss"] == final["torch"]["loss"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "fizzbuz"], "unknown scenario"),
        (["check", "{chaos}", "--variant", "nope"], "no variant 'nope'"),
        (["check", "{chaos}", "--rtol", "1e-3"], "--rtol and --atol must be given together"),
        (["check", "{chaos}", "--device", "cuda"], "CUDA is not available"),
        (["check", "{chaos}", "--steps", "0"], "--steps"),
        (["check", "no/such/file.py"], "no such scenario file"),
        (["check", "{chaos}", "--memory", "0"], "--memory must be a finite positive number of MiB"),
        (["check", "{chaos}", "--memory", "nan"], "--memory must be a finite positive number of MiB"),
        (["check", "{chaos}", "--memory", "inf"], "--memory must be a finite positive number of MiB"),
        (["check", "{chaos}", "--memory", "lots"], "Invalid value for '--memory'"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(chaos_path, args, message):
    done = gradstep(*[a.format(chaos=chaos_path) for a in args])
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_unknown_name_suggests_the_closest(tmp_path):
    done = gradstep("check", "fizzbuz")
    assert "fizzbuzz" in done.stderr


def test_list_names_every_bundled_scenario():
    from gradstep.loader import bundled_names

    done = gradstep("list")
    assert done.returncode == 0
    for name in bundled_names():
        assert name in done.stdout
