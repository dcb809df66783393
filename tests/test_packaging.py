"""The package as a user gets it: a wheel with the bundled scenarios inside, a core without Textual."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted(p.stem for p in (ROOT / "scenarios").glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    return next(out.glob("gradstep-*.whl"))


def test_wheel_contains_every_bundled_scenario(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for name in BUNDLED:
        assert f"gradstep/scenarios/{name}.py" in names
    assert "gradstep/cli.py" in names


def test_non_editable_install_loads_bundled_scenarios_by_name(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )
    probe = (
        "import gradstep.loader as l; "
        "print(l.bundled_dir()); print(sorted(l.bundled_names())); print(l.load_scenario('neuron').name)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    where, names, loaded = done.stdout.splitlines()
    assert Path(where) == target / "gradstep" / "scenarios"
    assert names == repr(BUNDLED)
    assert loaded == "neuron"


def test_the_core_never_imports_textual():
    core = ["scenario", "loader", "sides", "engine", "trace", "compare", "numfmt", "keys", "report", "cli",
            "session_file", "session_tree", "session_window", "session_zip", "recorded"]
    probe = (
        f"import sys; import {', '.join('gradstep.' + m for m in core)}; "
        "bad = [m for m in ('textual',) if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_python_m_gradstep_and_console_script_agree():
    done = subprocess.run([sys.executable, "-m", "gradstep", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "gradstep, version" in done.stdout
