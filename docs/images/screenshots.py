"""Regenerate the SVG screenshots of docs/tui.md and docs/patching.md, driving the app as a person does.

    python docs/images/screenshots.py          (from the repository root)

Each shot is the app after a few key presses, saved with ``App.save_screenshot``.
Patches applied on the way are saved under a temporary $XDG_STATE_HOME.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp()
warnings.simplefilter("ignore", RuntimeWarning)

from textual.widgets import Input, TextArea  # noqa: E402

from tests.test_tui_helpers import (  # noqa: E402
    add_line_after,
    append_to_line,
    apply_patch,
    make_app,
    open_editor,
    press,
    replace_line,
    settle,
    type_text,
)

HERE = Path(__file__).resolve().parent
Input.cursor_blink = False  # a still cursor: the same picture every time
TextArea.cursor_blink = False


async def find(pilot, name: str) -> None:
    await press(pilot, "slash")
    await type_text(pilot, name)
    await press(pilot, "enter")


async def neuron_step(pilot) -> None:
    await press(pilot, "n")


async def neuron_diagnosis(pilot) -> None:
    await press(pilot, "n", "a")


async def neuron_present(pilot) -> None:
    await press(pilot, "n", "P")


async def fizzbuzz_three_steps(pilot) -> None:
    await press(pilot, "n", "n", "n")
    await find(pilot, "after w1")


async def editor_error(pilot) -> None:
    await press(pilot, "n")
    await open_editor(pilot, "numpy.backward")
    await replace_line(pilot, "grad_y = output - gt", "grad_y = (")
    await apply_patch(pilot)


async def fizzbuzz_fixed(pilot) -> None:
    await press(pilot, "g")
    await type_text(pilot, "20")
    await press(pilot, "enter")
    await open_editor(pilot, "torch.loss")
    await append_to_line(pilot, "loss = error.pow(2).sum()", "/2")
    await replace_line(pilot, '"printed": error.detach().mean()',
                       'return {"loss": loss, "printed": (error.detach() ** 2).mean()}', paste=True)
    await apply_patch(pilot)
    await open_editor(pilot, "numpy.backward")
    await replace_line(pilot, "hiddenerror = outerror.dot(", 'hiddenerror = outgrad.dot(weights["w2"].T)', paste=True)
    await apply_patch(pilot)
    await open_editor(pilot, "torch.update")
    await add_line_after(pilot, "w1.grad.zero_()", "b1.grad.zero_()")
    await apply_patch(pilot)
    await find(pilot, "after b1")


SHOTS = [
    ("tui-neuron-160x48.svg", "neuron", "as-posted", (160, 48), neuron_step),
    ("tui-neuron-80x24.svg", "neuron", "as-posted", (80, 24), neuron_step),
    ("tui-diagnosis-80x24.svg", "neuron", "as-posted", (80, 24), neuron_diagnosis),
    ("tui-present-120x40.svg", "neuron", "as-posted", (120, 40), neuron_present),
    ("tui-fizzbuzz-160x48.svg", "fizzbuzz", "as-posted", (160, 48), fizzbuzz_three_steps),
    ("patch-editor-error-120x34.svg", "neuron", "as-posted", (120, 34), editor_error),
    ("patch-fizzbuzz-fixed-160x48.svg", "fizzbuzz", "as-posted", (160, 48), fizzbuzz_fixed),
]


async def shoot(name: str, scenario: str, variant: str, size: tuple[int, int], keys) -> None:
    app = make_app(scenario, variant)
    app.title = f"gradstep {scenario}"
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await keys(pilot)
        await settle(pilot)
        app.clear_notifications()
        await pilot.pause(0.4)  # the loss plot redraws once stepping pauses
        app.save_screenshot(name, str(HERE))
    print(HERE / name)


def main() -> None:
    wanted = set(sys.argv[1:])
    for shot in SHOTS:
        if not wanted or shot[0] in wanted:
            asyncio.run(shoot(*shot))


if __name__ == "__main__":
    main()
