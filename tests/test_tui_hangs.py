"""Code that never returns, or ends the process, cannot take the debugger with it.

A patch that loops forever is stopped by escape (or by the time limit on its
check) with its text kept and its line marked; `os._exit` and `sys.exit` in a
patch are its error, not the app's end. In a real terminal, `q` ends the
process within two seconds even while a thread is stuck inside a C call, and
SIGTERM gives the terminal back. The pilot cannot wait for a worker that never
ends, so these tests post keys and poll.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from textual import events

from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.patch import Patch, source_of
from gradstep.tui import patching as tui_patching
from gradstep.tui.screens import PatchEditor
from gradstep.tui.session import Debugger
from tests.test_tui_helpers import add_line_after, editor_text, make_app, open_editor, press, settle

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return tmp_path


async def until_free(app, seconds: float = 5.0) -> float:
    """Poll until the engine worker is free (never waiting on the worker itself); the time it took."""
    start = time.monotonic()
    while app.busy and time.monotonic() - start < seconds:
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def message(app) -> str:
    from tests.test_tui_helpers import shown

    return shown(app.screen.query_one("#patch-message")).replace("\n", " ")


def test_a_patch_that_never_returns_is_refused_after_the_time_limit(monkeypatch):
    monkeypatch.setattr(tui_patching, "VALIDATION_SECONDS", 0.3)
    d = Debugger(Engine(load_scenario("neuron", "as-posted")))
    source = source_of(d.patches.base, "numpy.loss").replace("    output, gt", "    while True:\n        pass\n"
                                                             "    output, gt", 1)
    engine = d.engine
    outcome = d.patches.apply(d, Patch("numpy.loss", source), 0)
    assert outcome.kind == "refused" and "did not return within 0.3 s" in outcome.message
    assert source.splitlines()[outcome.line - 1].strip() in ("while True:", "pass")  # where it was looping
    assert d.engine is engine and not d.patches.in_force()


@pytest.mark.parametrize("exit_call", ["os._exit(3)", "sys.exit(3)"])
def test_exits_in_a_patch_are_its_error(exit_call):
    from gradstep import stoppable

    stoppable.guard_exits()  # as the app does
    d = Debugger(Engine(load_scenario("neuron", "as-posted")))
    source = source_of(d.patches.base, "numpy.loss").replace("    output, gt", f"    import os, sys\n    {exit_call}\n"
                                                             "    output, gt", 1)
    stopper = stoppable.JobStopper()
    outcome = stopper.run(lambda: d.patches.apply(d, Patch("numpy.loss", source), 0), lambda stop: None)
    assert outcome.kind == "refused" and f"it called {exit_call}" in outcome.message, outcome.message


def test_escape_stops_a_patch_that_never_returns_and_a_fixed_one_applies():
    asyncio.run(_escape_stops_a_patch())


async def _escape_stops_a_patch() -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "n")
        engine = app.debugger.engine
        await open_editor(pilot, "numpy.backward")
        await add_line_after(pilot, "grad_y = output - gt", "while grad_y is not None: pass")
        text = editor_text(pilot)
        app.post_message(events.Key("ctrl+r", None))
        await asyncio.sleep(0.5)
        assert app.busy  # inside the loop
        app.post_message(events.Key("escape", None))
        assert await until_free(app) < 3.0
        await pilot.pause()
        assert isinstance(app.screen, PatchEditor) and editor_text(pilot) == text  # the text stays
        assert "did not return" in message(app) and "nothing changed" in message(app)
        assert app.debugger.engine is engine and not app.debugger.patches.in_force()
        await add_line_after(pilot, "while grad_y", "grad_y = 2 * grad_y")
        area = app.screen.text_area
        area.text = area.text.replace("    while grad_y is not None: pass\n", "")
        app.post_message(events.Key("ctrl+r", None))  # a fixed patch is taken at once: nothing in flight
        await until_free(app, 20)
        await settle(pilot)
        assert app.screen is app.main and list(app.debugger.patches.in_force()) == ["numpy.backward"]
        assert app.debugger.engine.first_divergence is None


def test_a_live_step_that_never_returns_drops_what_is_queued_and_escape_twice_stops_it():
    """A step inside a loop shows it runs; presses meanwhile are counted, escape drops them (and says so), and
    only a second escape stops the step inside the code: the run then says it cannot go on."""
    asyncio.run(_live_step_never_returns())


async def _live_step_never_returns() -> None:
    from gradstep.patch import patched_scenario
    from gradstep.tui import create_app
    from tests.test_tui_helpers import shown

    neuron = load_scenario("neuron", "as-posted")
    looping = source_of(neuron, "numpy.forward").replace("    return", "    while True: pass\n    return", 1)
    app = create_app(Engine(patched_scenario(neuron, [Patch("numpy.forward", looping)])))
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.post_message(events.Key("n", "n"))
        await asyncio.sleep(0.5)
        bar = app.main.query_one("RunBar")
        for _ in range(3):
            app.post_message(events.Key("n", "n"))
        await asyncio.sleep(0.1)
        label = shown(bar.query_one("#run-label"))
        assert app.busy and "stepping to step 0…" in label and "(+3 steps queued)" in label
        app.post_message(events.Key("escape", None))
        await asyncio.sleep(0.1)
        assert "the +3 steps queued are dropped" in shown(bar.query_one("#run-label"))
        await asyncio.sleep(0.5)  # a moment later it is still inside the loop: the bar offers the second escape
        assert app.busy and "escape again stops it there" in shown(bar.query_one("#run-label"))
        app.post_message(events.Key("escape", None))
        assert await until_free(app) < 3.0
        await settle(pilot)
        assert app.frame.error is not None and "did not return: stopped there" in app.frame.error.message
        assert app.debugger.engine.next_step == 0 and not app._pending


# ---- the real app in a terminal: quitting and signals ------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
RESTORED = "\x1b[?1049l"  # back to the main screen: Textual's last word, and the hard exit's


def hanging_patch(tmp_path: Path, body: str) -> Path:
    """A patch file whose NumPy forward never returns."""
    from gradstep.patch import dumps

    neuron = load_scenario("neuron", "as-posted")
    source = source_of(neuron, "numpy.forward").replace("    return", f"    import time\n    {body}\n    return", 1)
    path = tmp_path / "hang.py"
    path.write_text(dumps([Patch("numpy.forward", source)], neuron))
    return path


class Terminal:
    """``gradstep ARGS`` in a pseudo-terminal of 100x30, as a person runs it."""

    def __init__(self, *args: str, home: Path) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "XDG_STATE_HOME": str(home), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "gradstep", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, cwd=ROOT, start_new_session=True)
        os.close(slave)
        self.output = b""

    def read(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # the other end closed: the process is gone
                    return

    def wait_for(self, text: str, seconds: float = 60) -> None:
        """Until ``text`` is on screen, however the terminal wrapped it (escapes and whitespace left out)."""
        wanted = "".join(text.split())
        end = time.monotonic() + seconds
        while wanted not in self.screen_text() and time.monotonic() < end and self.proc.poll() is None:
            self.read(0.2)
        assert wanted in self.screen_text(), self.output[-2000:]

    def screen_text(self) -> str:
        text = re.sub(r"\x1b(\[[0-9;?<>=$]*[ -/]*[@-~]|\][^\x07]*\x07|.)", "", self.output.decode("utf-8", "replace"))
        return "".join(text.split())

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def ended_within(self, seconds: float) -> float:
        start = time.monotonic()
        while self.proc.poll() is None and time.monotonic() - start < seconds:
            self.read(0.05)
        self.read(0.2)
        return time.monotonic() - start

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal(state_home):
    made: list[Terminal] = []

    def start(*args: str) -> Terminal:
        made.append(Terminal(*args, home=state_home))
        return made[-1]

    yield start
    for t in made:
        t.close()


def test_q_ends_the_process_at_once_even_with_a_thread_stuck_in_a_c_call(tmp_path, terminal):
    app = terminal("neuron", "--patch", str(hanging_patch(tmp_path, "time.sleep(1000)")))
    app.wait_for("as-posted")
    app.read(1.0)
    app.send("n")  # the forward sleeps: the step never ends
    app.wait_for("stepping to step", 20)  # the step is running (on a loaded machine it can take a while to start)
    # Stop it between steps (it never gets there), then inside the step: it cannot be, and is left behind.
    app.send("\x1b")
    app.read(1.0)
    app.send("\x1b")
    app.wait_for("stuck in a call", 30)  # the debugger is free again, and says why the run cannot go on
    app.send("q")
    took = app.ended_within(10)
    assert app.proc.returncode == 0 and took < 3.0, (took, app.output[-500:])
    assert RESTORED.encode() in app.output[-200:]  # the main screen back, the cursor shown


def test_sigterm_gives_the_terminal_back_while_a_patch_loops(tmp_path, terminal):
    app = terminal("neuron", "--patch", str(hanging_patch(tmp_path, "while True: pass")))
    app.wait_for("as-posted")
    app.read(1.0)
    app.send("n")
    app.read(1.0)
    app.proc.send_signal(signal.SIGTERM)
    took = app.ended_within(10)
    assert app.proc.returncode == 128 + signal.SIGTERM and took < 3.0, (took, app.output[-500:])
    tail = app.output[-300:]
    assert RESTORED.encode() in tail and b"\x1b[?1000l" in tail and b"\x1b[?25h" in tail
