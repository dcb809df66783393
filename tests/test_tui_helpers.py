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


def lines(widget) -> list[str]:
    """The widget's lines as drawn now, as plain text."""
    size = widget.outer_size
    return [strip.text.rstrip() for strip in widget.render_lines(Region(0, 0, size.width, size.height))]


def shown(widget) -> str:
    return "\n".join(lines(widget))
