"""Text from a file never reaches the terminal raw: a hostile session file's escapes are shown, not obeyed."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradstep.cli import main
from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.recorded import RecordedRun
from gradstep.safe_text import is_printable, printable, shown
from gradstep.session_file import save
from gradstep.tui import create_app
from gradstep.tui.widgets import StatusBar, TensorNavigator
from tests.test_tui_helpers import run_async, settle
from tests.test_tui_helpers import shown as drawn

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# Retitle the window, clear the screen, write the clipboard (OSC 52), reverse the text that follows.
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x1b]52;c;cHduZWQ=\x07\u202eneuron"


def hostile_session(tmp_path: Path) -> Path:
    """A real session whose scenario name, summary, notes and a tensor's name carry terminal escapes."""
    engine = Engine(load_scenario("neuron", "as-posted"))
    engine.run()
    good = save(engine, tmp_path / "good.gradstep").path
    with zipfile.ZipFile(good) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(files["session.json"])
    scenario = manifest["session"]["scenario"]
    scenario["name"], scenario["summary"] = HOSTILE, HOSTILE + " summary"
    manifest["notes"] = [HOSTILE]
    text = json.dumps(manifest).replace('"grad w"', json.dumps("grad w\x1b[8m"))  # every use of the name
    files["session.json"] = text.encode()
    bad = tmp_path / "hostile.gradstep"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return bad


def test_printable_escapes_controls_and_bidi_and_keeps_what_is_plain():
    assert printable(HOSTILE) == "\\x1b]0;PWNED\\x07\\x1b[2J\\x1b]52;c;cHduZWQ=\\x07\\u202eneuron"
    assert printable("a\tb\nc") == "a\\tb\\nc" and printable("a\tb\nc", lines=True) == "a\tb\nc"
    assert printable("grad w1 ✓ é") == "grad w1 ✓ é" and is_printable("grad w1") and not is_printable("w\x9b")
    assert shown(10**400) == "a 401-digit number" and shown("\x1b" * 3) == "'\\x1b\\x1b\\x1b'"


def test_open_report_of_a_hostile_session_prints_no_escape(tmp_path):
    path = hostile_session(tmp_path)
    done = CliRunner().invoke(main, ["open", str(path), "--report"])
    out = done.stdout + done.stderr
    assert done.exit_code == 1, out  # the run diverged; it was read and reported
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b]0;PWNED\\x07" in out and "grad w\\x1b[8m" in out  # shown, for what it is


def test_a_hostile_scenario_files_names_are_escaped(tmp_path):
    source = (Path(__file__).parent / "fixtures" / "mine_mlp.py").read_text()
    path = tmp_path / "mine.py"
    path.write_text(source.replace('name="mine"', 'name="mine\\x1b]0;PWNED\\x07"', 1))
    scenario = load_scenario(str(path))
    assert scenario.name == "mine\\x1b]0;PWNED\\x07"


@run_async
async def test_the_app_shows_a_hostile_session_escaped(tmp_path):
    app = create_app(RecordedRun.open(hostile_session(tmp_path)))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = "\n".join(drawn(w) for w in (app.main.query_one(StatusBar), app.main.query_one(TensorNavigator)))
        assert "\x1b" not in app.title + screen and "\u202e" not in app.title + screen
        assert "\\x1b]0;PWNED" in screen and "grad w\\x1b[8m" in screen  # shown, escaped
