"""gradstep.loader: bundled scenarios by name, the user's by path, and one clear LoadError for a broken file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradstep.loader import LoadError, bundled_dir, bundled_names, load_scenario, resolve
from gradstep.scenario import Scenario

REPO = Path(__file__).resolve().parent.parent

# A minimal valid scenario: the loader checks the contract, it never calls the functions.
TEMPLATE = '''\
from gradstep.scenario import NumpySide, Scenario, TorchSide, Variant


def f(*args):
    return {}


def g(*args):
    return {}


SCENARIO = Scenario(
    name="tiny",
    summary="a scenario for the loader's tests",
    dtype="float64",
    seed=0,
    epochs=1,
    hyper={"lr": 0.1},
    data=f,
    init=f,
    numpy=NumpySide(forward=f, loss=f, backward=f, update=f),
    torch=TorchSide(model=f, forward=f, loss=f),
    variants={
        "as-posted": Variant("as posted"),
        "fixed": Variant("fixed", {"numpy.backward": g, "hyper.lr": 0.5}),
    },
)
'''
SCENARIO_LINE = TEMPLATE.splitlines().index("SCENARIO = Scenario(") + 1


def write(tmp_path: Path, text: str, name: str = "broken.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path.resolve()


def broken(tmp_path: Path, old: str, new: str) -> Path:
    assert old in TEMPLATE
    return write(tmp_path, TEMPLATE.replace(old, new, 1))


def line_of(path: Path, fragment: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), start=1) if fragment in text)


def load_error(name_or_path, variant: str | None = None) -> LoadError:
    with pytest.raises(LoadError) as info:
        load_scenario(str(name_or_path), variant)
    return info.value


def assert_names_file_and_line(error: LoadError, path: Path, line: int) -> None:
    assert (error.path, error.line) == (str(path), line)
    assert str(error).startswith(f"{path}:{line}: ")


@pytest.fixture
def neuron_path() -> Path:
    path = bundled_dir() / "neuron.py"
    if not path.is_file():
        pytest.skip("the bundled neuron scenario is not there yet")
    return path


# --- loading good scenarios -----------------------------------------------------------------


def test_bundled_scenario_by_name(neuron_path):
    s = load_scenario("neuron")
    assert isinstance(s, Scenario)
    assert s.name == "neuron"
    assert s.variant == s.default_variant == "as-posted"
    assert Path(s.source_path) == neuron_path.resolve()
    assert "neuron" in bundled_names()


def test_bundled_scenario_variant_is_applied(neuron_path):
    posted, fixed = load_scenario("neuron"), load_scenario("neuron", "fixed")
    assert fixed.variant == "fixed"
    # Every load runs the file afresh, so compare the functions by name.
    assert (posted.numpy.backward.__name__, fixed.numpy.backward.__name__) == ("backward", "backward_fixed")
    assert fixed.numpy.forward.__name__ == posted.numpy.forward.__name__ == "forward"


def test_bundled_scenario_by_path(neuron_path):
    by_path = load_scenario(str(neuron_path))
    assert by_path.name == load_scenario("neuron").name
    assert Path(by_path.source_path) == neuron_path.resolve()


def test_own_scenario_by_path_with_variants(tmp_path):
    path = write(tmp_path, TEMPLATE, "tiny.py")
    s = load_scenario(str(path))
    assert (s.name, s.variant, s.source_path, s.hyper["lr"]) == ("tiny", "as-posted", str(path), 0.1)
    fixed = load_scenario(str(path), "fixed")
    assert fixed.variant == "fixed"
    assert fixed.hyper["lr"] == 0.5
    assert fixed.numpy.backward.__name__ == "g"
    assert fixed.numpy.forward.__name__ == "f"


def test_relative_path_is_resolved(tmp_path, monkeypatch):
    write(tmp_path, TEMPLATE, "tiny.py")
    monkeypatch.chdir(tmp_path)
    assert resolve("tiny.py") == (tmp_path / "tiny.py").resolve()


# --- names and paths that do not exist ------------------------------------------------------


def test_unknown_name_lists_the_closest_names(neuron_path):
    error = load_error("nueron")
    message = str(error)
    assert "'nueron'" in message
    assert "Did you mean neuron" in message
    for name in bundled_names():
        assert name in message


def test_unknown_name_without_a_close_one_lists_the_bundled():
    error = load_error("qqqqqqqqqqqq")
    assert "Did you mean" not in str(error)
    assert "Bundled scenarios:" in str(error)
    for name in bundled_names():
        assert name in str(error)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere.py"
    error = load_error(path)
    assert error.path == str(path)
    assert "no such scenario file" in str(error)


# --- broken files: one LoadError naming the file, the line and what is wrong -----------------


def test_syntax_error(tmp_path):
    path = broken(tmp_path, "    seed=0,\n", "    seed=0,,\n")
    error = load_error(path)
    assert_names_file_and_line(error, path, line_of(path, "seed=0,,"))
    assert "syntax error" in str(error)


def test_name_error_while_importing(tmp_path):
    path = broken(tmp_path, "def g(*args):", "X = undefined_name + 1\n\n\ndef g(*args):")
    error = load_error(path)
    assert_names_file_and_line(error, path, line_of(path, "undefined_name"))
    assert "NameError" in str(error)
    assert "undefined_name" in str(error)


def test_exception_inside_a_function_called_at_import_names_the_raising_line(tmp_path):
    text = TEMPLATE.replace(
        "def g(*args):",
        "def h():\n    return {}['missing']\n\n\nh()\n\n\ndef g(*args):",
    )
    path = write(tmp_path, text)
    error = load_error(path)
    assert_names_file_and_line(error, path, line_of(path, "['missing']"))
    assert "KeyError" in str(error) and "missing" in str(error)


def test_no_scenario(tmp_path):
    path = broken(tmp_path, "SCENARIO = Scenario(", "OTHER = Scenario(")
    error = load_error(path)
    assert error.path == str(path)
    assert str(error).startswith(f"{path}: ")
    assert "defines no SCENARIO" in str(error)


def test_scenario_of_the_wrong_type(tmp_path):
    path = broken(tmp_path, "SCENARIO = Scenario(", "SCENARIO = dict(")
    error = load_error(path)
    assert_names_file_and_line(error, path, SCENARIO_LINE)
    assert "SCENARIO is a dict" in str(error)


def test_missing_fixed_variant(tmp_path):
    path = broken(tmp_path, '        "fixed": Variant("fixed", {"numpy.backward": g, "hyper.lr": 0.5}),\n', "")
    error = load_error(path)
    assert_names_file_and_line(error, path, SCENARIO_LINE)
    assert "'fixed' is missing" in str(error)


def test_bad_dtype(tmp_path):
    path = broken(tmp_path, 'dtype="float64"', 'dtype="float16"')
    error = load_error(path)
    assert_names_file_and_line(error, path, SCENARIO_LINE)
    assert "dtype" in str(error) and "'float16'" in str(error)
    assert "float32" in str(error) and "float64" in str(error)


def test_bad_dtype_in_an_annotated_scenario_names_the_line(tmp_path):
    text = TEMPLATE.replace("SCENARIO = Scenario(", "SCENARIO: Scenario = Scenario(").replace("float64", "float16")
    path = write(tmp_path, text)
    error = load_error(path)
    assert_names_file_and_line(error, path, SCENARIO_LINE)


def test_several_problems_come_in_one_error(tmp_path):
    path = broken(tmp_path, 'dtype="float64",\n    seed=0,', 'dtype="half",\n    seed="zero",')
    error = load_error(path)
    assert_names_file_and_line(error, path, SCENARIO_LINE)
    assert "dtype" in str(error) and "seed must be an int" in str(error)


def test_unknown_variant_requested(tmp_path):
    path = write(tmp_path, TEMPLATE)
    error = load_error(path, "fixd")
    assert error.path == str(path)
    assert "'fixd'" in str(error)
    assert "as-posted" in str(error) and "fixed" in str(error)


def test_variant_replacing_an_unknown_field(tmp_path):
    path = broken(tmp_path, '"numpy.backward": g', '"numpy.bakward": g')
    error = load_error(path, "fixed")
    assert error.path == str(path)
    assert str(error).startswith(f"{path}")
    assert "'fixed'" in str(error) and "'numpy.bakward'" in str(error)


def test_variant_replacing_an_unknown_top_level_field(tmp_path):
    path = broken(tmp_path, '"hyper.lr": 0.5', '"learning_rate": 0.5')
    error = load_error(path, "fixed")
    assert "'learning_rate'" in str(error)


def test_variant_replacing_an_unknown_field_names_a_line(tmp_path):
    path = broken(tmp_path, '"numpy.backward": g', '"numpy.bakward": g')
    error = load_error(path, "fixed")
    assert error.line is not None
    assert str(error).startswith(f"{path}:{error.line}: ")


def test_broken_variant_is_reported_whichever_variant_is_loaded(tmp_path):
    path = broken(tmp_path, '"numpy.backward": g', '"numpy.bakward": g')
    error = load_error(path)
    assert "'numpy.bakward'" in str(error)


# --- through the command line ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_on_broken_file(tmp_path_factory):
    """``python -m gradstep check`` on a file with a NameError, in a folder with a long name; run once."""
    folder = tmp_path_factory.mktemp("cli") / ("a_folder_with_a_long_name_" * 3)
    folder.mkdir()
    path = broken(folder, "def g(*args):", "X = undefined_name + 1\n\n\ndef g(*args):")
    proc = subprocess.run(
        [sys.executable, "-m", "gradstep", "check", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    return path, line_of(path, "undefined_name"), proc


def test_cli_check_of_a_broken_file_exits_2_without_traceback(cli_on_broken_file):
    path, line, proc = cli_on_broken_file
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout == ""
    # Lines may be broken for the console's width; the message itself must be all there.
    unwrapped = proc.stderr.replace("\n", "")
    assert f"{path}:{line}:" in unwrapped
    assert "NameError" in unwrapped and "undefined_name" in unwrapped


def test_cli_error_keeps_a_long_path_on_one_line(cli_on_broken_file):
    # Piped stderr is 80 columns wide to the console; the path is longer and must not be broken apart.
    path, line, proc = cli_on_broken_file
    assert len(str(path)) > 80
    assert f"{path}:{line}: NameError" in proc.stderr


def run_cli(*args: str):
    from gradstep.cli import main

    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    seed=0,\n", "    seed=0,,\n", "syntax error"),
        ("SCENARIO = Scenario(", "OTHER = Scenario(", "defines no SCENARIO"),
        ('dtype="float64"', 'dtype="float16"', "'float16'"),
    ],
    ids=["syntax", "no-scenario", "dtype"],
)
def test_cli_check_of_broken_files_exits_2(tmp_path, old, new, expected):
    path = broken(tmp_path, old, new)
    result = run_cli("check", str(path))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert expected in result.stderr.replace("\n", "")
    assert "broken.py" in result.stderr.replace("\n", "")


def test_cli_error_message_is_not_read_as_console_markup(tmp_path):
    path = broken(tmp_path, "def g(*args):", "X = {}['[bold]key[/bold]']\n\n\ndef g(*args):")
    result = run_cli("check", str(path))
    assert result.exit_code == 2
    assert "KeyError" in result.stderr
    assert "[bold]key[/bold]" in result.stderr


def test_cli_check_of_an_unknown_variant_exits_2(tmp_path):
    path = write(tmp_path, TEMPLATE)
    result = run_cli("check", str(path), "--variant", "fixd")
    assert result.exit_code == 2
    assert "'fixd'" in result.stderr and "Traceback" not in result.output


def test_cli_check_of_an_unknown_name_exits_2(neuron_path):
    result = run_cli("check", "nueron")
    assert result.exit_code == 2
    assert "Did you mean neuron" in result.stderr.replace("\n", " ")
