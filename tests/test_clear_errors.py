"""A scenario that returns the wrong thing, a typo, an absurd number, Ctrl-C: one clear message, the right exit.

Each case breaks tests/fixtures/mine_mlp.py (a scenario as `gradstep new` writes it) the way a user's own
file goes wrong, and runs `gradstep check` on it as a user does.
"""

from __future__ import annotations

import json
import os
import zipfile

import pytest
from click.testing import CliRunner

from gradstep import cli
from gradstep.cli import main
from tests.test_user_errors import assert_no_traceback, broken, line_of

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def check(*args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(main, ["check", *map(str, args)])


# ---- functions that return what gradstep cannot use: exit 2, the function's file:line -----------------

WRONG_RETURNS = [
    # (old, new, the function's def line, what the message says)
    ('    return {"z": z, "h": h, "out": out}', "    return [z, h, out]", "def forward(",
     "numpy forward at step 0", "it returned a list; it must return a dict of named arrays"),
    ('    return {"z": z, "h": h, "out": out}', "    return 3", "def forward(", "numpy forward at step 0",
     "it returned the int 3"),
    ('    return {"z": z, "h": h, "out": net[2](h)}', '    return {"z": z, "h\\x1b[2J": h, "out": net[2](h)}',
     "def torch_forward(", "torch forward at step 0", "a name may not hold control characters"),
    ('    return np.mean((acts["out"] - batch["y"]) ** 2)', '    return "loss"', "def loss(", "numpy loss at step 0",
     "it returned the str 'loss'; it must return the loss"),
    ('    return Minibatches({"x": x, "y": y}, hp.batch_size, shuffle_seed=1)', "    return []", "def data(",
     "scenario data", "it returned an empty list; it must return the minibatches"),
    ('TensorMap("b2", "2.bias", SAME),', 'TensorMap("b2", "3.bias", SAME),', 'TensorMap("b2"',
     "torch mapping at step 0", "'3.bias' is neither a parameter of the model"),
]


@pytest.mark.parametrize(("old", "new", "line", "where", "message"), WRONG_RETURNS,
                         ids=["forward-list", "forward-int", "control-name", "loss-str", "data-empty", "mapping"])
def test_a_function_returning_what_gradstep_cannot_use_exits_2_at_its_line(tmp_path, old, new, line, where,
                                                                            message):
    path = broken(tmp_path, old, new)
    done = check(path)
    assert done.exit_code == 2, done.output
    assert_no_traceback(done)
    assert done.stdout == "" and done.stderr.count("\n") == 1  # nothing ran: one message, as a file that won't load
    assert f"{where} ({path}:{line_of(path, line)})" in done.stderr and message in done.stderr
    assert "\x1b" not in done.stderr


def test_data_batch_failing_mid_run_reports_the_steps_that_ran(tmp_path):
    path = broken(tmp_path, '    return Minibatches({"x": x, "y": y}, hp.batch_size, shuffle_seed=1)',
                  '    return Short(Minibatches({"x": x, "y": y}, hp.batch_size, shuffle_seed=1))')
    path.write_text(path.read_text() + '''

class Short:
    def __init__(self, inner):
        self.inner, self.steps_per_epoch = inner, inner.steps_per_epoch

    def batch(self, epoch, index):
        if index >= 2:
            return [][index]  # IndexError: list index out of range
        return self.inner.batch(epoch, index)
''')
    done = check(path)
    assert done.exit_code == 1
    assert_no_traceback(done)
    out = done.stdout
    assert f"error: scenario data.batch at step 2 ({path}:{line_of(path, 'return [][index]')}): IndexError" in out
    assert "ERROR at step 2: mine (as-posted), 2 steps" in out and "Tensors, worst over the run" in out


def test_sys_exit_in_a_scenario_function_is_its_error_not_gradsteps_exit(tmp_path):
    path = broken(tmp_path, '    return np.mean((acts["out"] - batch["y"]) ** 2)', "    import sys; sys.exit(3)")
    done = check(path)
    assert done.exit_code == 1
    assert_no_traceback(done)
    assert f"numpy loss at step 0 ({path}:{line_of(path, 'sys.exit(3)')}): it called sys.exit(3)" in done.stdout


# ---- typos and absurd numbers -----------------------------------------------------------------------


def test_a_variant_typo_gets_a_did_you_mean():
    done = check("neuron", "--variant", "as-postd")
    assert done.exit_code == 2 and "has no variant 'as-postd'" in done.stderr
    assert "did you mean 'as-posted'?" in done.stderr


def test_serve_checks_the_scenario_before_serving(monkeypatch):
    served = []
    monkeypatch.setattr(cli, "build_server", lambda *args, **kwargs: served.append(args))
    done = CliRunner().invoke(main, ["serve", "nosuch"])
    assert done.exit_code == 2 and "unknown scenario 'nosuch'" in done.stderr and not served
    done = CliRunner().invoke(main, ["serve", "neuron", "--variant", "fixd"])
    assert done.exit_code == 2 and "did you mean 'fixed'?" in done.stderr and not served


def test_more_steps_than_the_scenario_has_runs_its_steps_and_says_so():
    done = check("neuron", "--steps", "3000")
    assert done.exit_code == 1
    assert "3 of 3 steps" in done.stdout and "3000 of" not in done.stdout
    assert "--steps 3000 is more than the scenario runs: 3 steps" in done.stderr


def test_a_huge_format_version_is_not_printed_whole(tmp_path):
    good = tmp_path / "good.gradstep"
    assert check("neuron", "--save", good).exit_code == 1
    with zipfile.ZipFile(good) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(files["session.json"])
    manifest["format_version"] = 10**400
    files["session.json"] = json.dumps(manifest).encode()
    bad = tmp_path / "bad.gradstep"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    done = CliRunner().invoke(main, ["open", str(bad), "--report"])
    assert done.exit_code == 2 and "made by a newer gradstep: format a 401-digit number" in done.stderr
    assert len(done.stderr) < 300


# ---- Ctrl-C -------------------------------------------------------------------------------------------


def test_ctrl_c_exits_130(monkeypatch):
    def interrupted(engine, steps):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_with_progress", interrupted)
    done = check("neuron")
    assert done.exit_code == 130 and "interrupted" in done.stderr and "Aborted" not in done.output


def test_ctrl_c_while_saving_leaves_no_temporary_and_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "run.gradstep"
    target.write_bytes(b"the old file")
    from gradstep import session_zip

    real_put = session_zip.ArchiveWriter.put

    def put(self, array):
        if self._count == 3:
            raise KeyboardInterrupt
        return real_put(self, array)

    monkeypatch.setattr(session_zip.ArchiveWriter, "put", put)
    done = check("neuron", "--save", target)
    assert done.exit_code == 130
    assert sorted(os.listdir(tmp_path)) == ["run.gradstep"] and target.read_bytes() == b"the old file"
