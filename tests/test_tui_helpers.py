"""Helpers (no tests here) for driving the app as a person does: the CLI's factory, keys, what is shown."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from textual.geometry import Region

from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.tui import create_app

FIXTURES = Path(__file__).parent / "fixtures"
FAULTS = str(FIXTURES / "faults.py")
CHAOS = str(FIXTURES / "chaos.py")
BIG = str(FIXTURES / "big.py")


def make_app(scenario: str = "neuron", variant: str | None = "as-posted", **options):
    """The app exactly as ``gradstep SCENARIO`` builds it (minus the user's keymap file)."""
    return create_app(Engine(load_scenario(scenario, variant)), **options)


def run_async(test):
    """Run an ``async def`` test body on a fresh event loop (no pytest-asyncio needed)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


async def settle(pilot) -> None:
    """Wait for the engine worker and for the screen to catch up."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def press(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


async def type_text(pilot, text: str) -> None:
    await pilot.press(*["space" if c == " " else c for c in text])


def recorded_notes(app) -> list[str]:
    """Every message the app shows from now on (toasts time out; the list does not)."""
    notes: list[str] = []
    original = app.notify

    def notify(message, **options):
        notes.append(message)
        return original(message, **options)

    app.notify = notify
    return notes


def lines(widget) -> list[str]:
    """The widget's lines as drawn now, as plain text."""
    size = widget.outer_size
    return [strip.text.rstrip() for strip in widget.render_lines(Region(0, 0, size.width, size.height))]


def shown(widget) -> str:
    return "\n".join(lines(widget))


# ---- the patch editor -----------------------------------------------------------------


def editor_text(pilot) -> str:
    from textual.widgets import TextArea

    return pilot.app.screen.query_one(TextArea).text


async def open_editor(pilot, target: str) -> None:
    """``f`` opens the editor; ``ctrl+o`` the list of formulas; arrows and Enter pick ``target``."""
    from gradstep.tui.screens import PatchEditor

    if not isinstance(pilot.app.screen, PatchEditor):
        await press(pilot, "f")
    editor = pilot.app.screen
    assert isinstance(editor, PatchEditor)
    if editor.target == target:
        return
    listed = editor.session.targets  # in the list's order
    here, there = listed.index(editor.target), listed.index(target)
    await pilot.press("ctrl+o", *(["down"] * (there - here) if there > here else ["up"] * (here - there)), "enter")
    await settle(pilot)
    assert editor.target == target and editor.text_area.has_focus


async def _go_to_line(pilot, containing: str) -> None:
    from textual.widgets import TextArea

    area = pilot.app.screen.query_one(TextArea)
    row = next(i for i, line in enumerate(area.text.splitlines()) if containing in line)
    here = area.cursor_location[0]
    await pilot.press(*(["down"] * (row - here) if row > here else ["up"] * (here - row)))
    assert area.cursor_location[0] == row


async def replace_line(pilot, containing: str, new: str, paste: bool = False) -> None:
    """Put the cursor on the line containing ``containing``, select its code and type (or paste) ``new`` over it.

    Typing costs some 70 ms a key through the pilot: long lines are pasted, as from the thread that found them.
    """
    await _go_to_line(pilot, containing)
    await pilot.press("end", "shift+home")  # home goes to the first non-blank: the indent stays
    if paste:
        from textual import events

        pilot.app.post_message(events.Paste(new))  # the terminal's bracketed paste, to the focused editor
        await pilot.pause()
    else:
        await type_text(pilot, new)


async def append_to_line(pilot, containing: str, text: str) -> None:
    """Type ``text`` at the end of the line containing ``containing``."""
    await _go_to_line(pilot, containing)
    await pilot.press("end")
    await type_text(pilot, text)


async def add_line_after(pilot, containing: str, new: str) -> None:
    """A new line after the one containing ``containing``, typed as a person does: Enter indents it like that one."""
    await _go_to_line(pilot, containing)
    await pilot.press("end", "enter")
    await type_text(pilot, new)


async def apply_patch(pilot) -> None:
    await press(pilot, "ctrl+r")
    while pilot.app.busy:
        await settle(pilot)
