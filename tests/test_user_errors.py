"""Mistakes in a user's scenario file, through `gradstep check`: one clear message, never a traceback.

Load and set-up problems (the file, `init`, the model, the mapping) exit 2 with
`file:line` on stderr; an exception while stepping ends the report with the
side, the function, the step and the user's `file:line`, and exits 1. Each case
breaks tests/fixtures/mine_mlp.py, a scenario written from `gradstep new`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gradstep.cli import main

MINE = Path(__file__).parent / "fixtures" / "mine_mlp.py"


def broken(tmp_path: Path, old: str, new: str) -> Path:
    text = MINE.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "mine.py"
    path.write_text(text.replace(old, new))
    return path.resolve()


def line_of(path: Path, fragment: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), start=1) if fragment in text)


def check(path: Path, *args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(main, ["check", str(path), *args])


def assert_no_traceback(done) -> None:
    assert "Traceback" not in done.stdout + done.stderr
    assert done.exception is None or isinstance(done.exception, SystemExit)


# --- problems before step 0: exit 2, `path:line` on stderr --------------------------------------

LOAD_ERRORS = [
    # (old, new, the line's fragment, what the message says)
    ("    seed=0,\n", "    seed=0,,\n", "seed=0,,", "syntax error"),
    ("import torch\n", "import torch\nimport my_helpers\n", "import my_helpers",
     "ModuleNotFoundError while running the file: No module named 'my_helpers'"),
    ('"b1": np.zeros(hp.hidden),', '"b1": np.zeros(hp.hiden),', "hp.hiden",
     "scenario init"),
    ('TensorMap("w1", "0.weight", TRANSPOSED),', 'TensorMap("w1", "0.weight", SAME),', 'TensorMap("w1"',
     "mapping 'w1' -> '0.weight': init gives shape (2, 8), the model's parameter has (8, 2)"),
    ('"w1": np.random.randn(2, hp.hidden) * 0.5,', '"w1": np.random.randn(3, hp.hidden) * 0.5,',
     'TensorMap("w1"', "init gives shape (8, 3), the model's parameter has (8, 2)"),
    ('TensorMap("b2", "2.bias", SAME),', 'TensorMap("b3", "2.bias", SAME),', 'TensorMap("b3"',
     "mapping names NumPy weight 'b3', which init() does not return"),
]


@pytest.mark.parametrize(("old", "new", "fragment", "message"), LOAD_ERRORS,
                         ids=["syntax", "import", "init", "layout", "shape", "not-in-init"])
def test_problems_before_step_0_exit_2_naming_file_and_line(tmp_path, old, new, fragment, message):
    path = broken(tmp_path, old, new)
    done = check(path)
    assert done.exit_code == 2, done.output
    assert_no_traceback(done)
    assert done.stdout == ""
    line = line_of(path, fragment)
    assert f"{path}:{line}" in done.stderr
    assert message in done.stderr
    assert done.stderr.count("\n") == 1  # one message, one line


def test_no_scenario_names_the_file(tmp_path):
    path = broken(tmp_path, "SCENARIO = Scenario(", "MY_SCENARIO = Scenario(")
    done = check(path)
    assert done.exit_code == 2
    assert_no_traceback(done)
    assert f"{path}: defines no SCENARIO" in done.stderr


def test_a_mapping_error_names_the_tensormap_line_in_json_mode_too(tmp_path):
    path = broken(tmp_path, 'TensorMap("b2", "2.bias", SAME),', 'TensorMap("b3", "2.bias", SAME),')
    done = check(path, "--json")
    assert done.exit_code == 2 and done.stdout == ""
    line = line_of(path, 'TensorMap("b3"')
    assert f"{path}:{line}" in done.stderr


# --- exceptions while stepping: a report that ends on the error, exit 1 ------------------------

STEP_ERRORS = [
    ("    h = np.tanh(z)\n", "    h = np.tanh(z @ w[\"w1\"])\n", "np.tanh(z @", "numpy forward", "ValueError"),
    ("    h = net[1](z)\n", "    h = net[1](z) @ net[2].weight\n", "net[1](z) @", "torch forward", "RuntimeError"),
]


@pytest.mark.parametrize(("old", "new", "fragment", "where", "kind"), STEP_ERRORS, ids=["numpy", "torch"])
def test_an_exception_in_a_forward_names_side_function_step_and_line(tmp_path, old, new, fragment, where, kind):
    path = broken(tmp_path, old, new)
    done = check(path)
    assert done.exit_code == 1
    assert_no_traceback(done)
    line = line_of(path, fragment)
    assert f"error: {where} at step 0 ({path}:{line}): {kind}:" in done.stdout
    assert "ERROR at step 0: mine (as-posted), 0 steps" in done.stdout
    # Nothing in the report may read as a verdict on the steps that never ran.
    assert "DIVERGED" not in done.stdout and "every step's local error is within tolerance" not in done.stdout
    assert "nan" not in done.stdout


def test_the_json_error_names_the_step_and_line(tmp_path):
    import json

    old, new, fragment, where, kind = STEP_ERRORS[0]
    path = broken(tmp_path, old, new)
    done = check(path, "--json")
    assert done.exit_code == 1
    error = json.loads(done.stdout)["error"]
    assert error.startswith(f"{where} at step 0 ({path}:{line_of(path, fragment)}): {kind}:")


def test_a_checkout_named_gradstep_still_counts_as_the_users_code(tmp_path):
    # `git clone .../gradstep` is the usual place for one's own scenarios: its frames are the user's.
    (tmp_path / "gradstep").mkdir()
    old, new, fragment, where, _ = STEP_ERRORS[0]
    path = broken(tmp_path / "gradstep", old, new)
    done = check(path)
    assert f"{where} at step 0 ({path}:{line_of(path, fragment)})" in done.stdout


def test_a_mapping_to_nothing_is_named(tmp_path):
    path = broken(tmp_path, 'TensorMap("b2", "2.bias", SAME),', 'TensorMap("b2", "2.bais", SAME),')
    done = check(path)
    out = " ".join((done.stdout + done.stderr).split())  # the report may wrap long lines
    assert "'2.bais'" in out and "neither a parameter" in out and "did you mean '2.bias'?" in out
    assert f"{path}:{line_of(path, '2.bais')}" in out
    assert done.exit_code == 2  # a mapping that does not fit the model: a bad scenario, before any step ran
    assert_no_traceback(done)
