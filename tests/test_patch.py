"""Patches: compile in the scenario's namespace, validate, keep history, files, --patch."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.patch import (
    Patch,
    PatchError,
    PatchSet,
    compile_patch,
    default_patch_file,
    dumps,
    loads,
    patched_scenario,
    replay,
    save,
    source_of,
    validate,
)

ROOT = Path(__file__).resolve().parent.parent

FIX = '''def backward(weights, acts, batch, hp):
    grad_y = 2 * (acts["output"] - batch["y"])
    return {"w": grad_y * batch["x"], "b": grad_y, "output": grad_y}
'''


@pytest.fixture
def neuron():
    return load_scenario("neuron", "as-posted")


def bad(body: str) -> Patch:
    return Patch("numpy.backward", "def backward(weights, acts, batch, hp):\n" + body)


def test_source_of_shows_the_functions_own_source(neuron):
    source = source_of(neuron, "numpy.backward")
    assert source.startswith("def backward(") and "grad_y = output - gt" in source


def test_patch_compiles_in_the_scenarios_namespace(neuron):
    # `np` is not imported by the patch: it resolves from the scenario file.
    source = "def loss(acts, batch, hp):\n    return np.square(acts['output'])\n"
    fn = compile_patch(neuron, Patch("numpy.loss", source))
    assert fn({"output": np.array([3.0])}, {}, None)[0] == 9.0


def test_the_fix_brings_parity_at_every_step(neuron):
    engine = Engine(patched_scenario(neuron, [Patch("numpy.backward", FIX)]))
    assert engine.run().parity
    assert not Engine(neuron).run().parity


@pytest.mark.parametrize(
    ("patch", "message", "line"),
    [
        (Patch("numpy.backward", "def backward(weights, acts, batch, hp)\n    return 1\n"), "syntax error", 1),
        (Patch("numpy.backward", "x = 1\n"), "defines no function", None),
        (bad("    return {'w': undefined_name}\n"), "NameError", 2),
        (bad("    raise ValueError('boom')\n"), "ValueError: boom", 2),
        (bad("    g = acts['output'] - batch['y']\n    return {'w': g, 'b': g}\n"), "returns no 'output'", None),
        (bad("    g = acts['output'] - batch['y']\n    return {'w': g, 'b': g, 'output': g, 'z': g}\n"),
         "returns 'z'", None),
        (bad("    g = acts['output'] - batch['y']\n    return {'w': np.zeros((2, 2)), 'b': g, 'output': g}\n"),
         r"shape \(2, 2\)", None),
        (bad("    g = acts['output'] - batch['y']\n    return {'w': g.astype(np.float32), 'b': g, 'output': g}\n"),
         "dtype float32", None),
        (bad("    g = acts['output'] - batch['y']\n    return {'w': g * np.nan, 'b': g, 'output': g}\n"),
         "NaN or Inf", None),
    ],
)
def test_bad_patches_are_refused_with_the_reason_and_line(neuron, patch, message, line):
    engine = Engine(neuron)
    engine.run(steps=1)
    with pytest.raises(PatchError, match=message) as caught:
        validate(engine, patch, step=0)
    if line is not None:
        assert caught.value.line == line
    assert engine.next_step == 1  # nothing changed


def test_torch_loss_patch_is_validated_on_a_copy_of_the_model():
    scenario = load_scenario("fizzbuzz", "as-posted")
    engine = Engine(scenario)
    engine.run(steps=2)
    before = {n: p.detach().clone() for n, p in engine.live.torch.model.named_parameters()}
    source = source_of(scenario, "torch.loss").replace("error.pow(2).sum()", "error.pow(2).sum() / 2", 1)
    validate(engine, Patch("torch.loss", source), step=1)
    for n, p in engine.live.torch.model.named_parameters():
        assert np.array_equal(before[n].numpy(), p.detach().numpy())


def test_history_undo_redo_reset():
    patches = PatchSet()
    first, second = Patch("numpy.backward", FIX), Patch("numpy.loss", "def loss(a, b, hp):\n    return 0\n")
    patches.apply(first)
    patches.apply(second)
    assert list(patches.in_force()) == ["numpy.backward", "numpy.loss"]
    assert patches.undo() == second and list(patches.in_force()) == ["numpy.backward"]
    assert patches.redo() == second
    patches.reset()
    assert patches.in_force() == {} and patches.redo() == first


def test_patch_file_round_trips_as_plain_python(neuron, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    patches = PatchSet()
    patches.apply(Patch("numpy.backward", FIX))
    path = save(patches, neuron)
    assert path == default_patch_file(neuron) and path.is_relative_to(tmp_path)
    text = path.read_text()
    compile(text, str(path), "exec")  # the file itself is valid Python
    assert loads(text) == [Patch("numpy.backward", FIX)]
    assert loads(dumps([], neuron)) == []


def test_unknown_target_in_a_file_is_refused():
    with pytest.raises(PatchError, match="unknown patch target"):
        loads("# --- gradstep patch: numpy.nothing ---\ndef f():\n    pass\n")


def test_replay_runs_the_patched_scenario_to_the_step_and_can_be_cancelled(neuron):
    engine = Engine(neuron, memory_mb=3)
    engine.run(steps=2)
    fresh = replay(engine, neuron, [Patch("numpy.backward", FIX)], steps=2)
    assert fresh.next_step == 2 and fresh.first_divergence is None
    assert fresh.trace.budget_bytes == engine.trace.budget_bytes == 3 << 20  # the user's --memory holds on
    assert replay(engine, neuron, [Patch("numpy.backward", FIX)], steps=2, cancelled=lambda: True) is None
    assert engine.first_divergence is not None  # the previous engine is untouched


def gradstep(*args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "gradstep", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_check_with_patch_file_exits_0_and_says_which_patches(neuron, tmp_path):
    path = tmp_path / "fix.py"
    path.write_text(dumps([Patch("numpy.backward", FIX)], neuron))
    fixed = gradstep("check", "neuron", "--variant", "as-posted", "--patch", str(path))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "patches in force: numpy.backward" in fixed.stdout + fixed.stderr
    assert gradstep("check", "neuron", "--variant", "as-posted").returncode == 1


def test_check_with_a_broken_patch_file_exits_2(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("# --- gradstep patch: numpy.backward ---\ndef backward(:\n")
    done = gradstep("check", "neuron", "--patch", str(path))
    assert done.returncode == 2 and "syntax error" in done.stderr and "Traceback" not in done.stderr
