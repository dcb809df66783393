"""The element under the cursor, both values and their differences, in full."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from gradstep.tui.grid_model import DiffMode, ElementInfo
from gradstep.tui.marks import BAD_MARK, palette_of


class ElementDetail(Static):
    def show_element(self, info: ElementInfo | None, mode: DiffMode, note: str = "") -> None:
        if info is None:
            self.update(Text(note or "no tensor selected", style="dim"), layout=False)
            return
        text = Text()
        text.append(info.index, style="bold")
        if info.abs is not None:
            verdict = f"  {BAD_MARK} out of tolerance" if info.bad else "  ✓ within tolerance"
            colours = palette_of(self.app)
            text.append(verdict, style=colours.bad if info.bad else colours.good)
        text.append(f"  ({info.tolerance})", style="dim")
        if note:
            text.append(f"  {note}", style="dim")
        for side, value, dtype, bits in (
            ("NumPy", info.numpy, info.numpy_dtype, info.numpy_hex),
            ("torch", info.torch, info.torch_dtype, info.torch_hex),
        ):
            text.append(f"\n{side} ", style="bold")
            if value is None:
                text.append("— (no element)", style="dim")
            else:
                text.append(value)
                text.append(f"  {dtype} {bits}", style="dim")
        if info.abs is not None:
            text.append("\n")
            for name, value, this in (("abs", info.abs, DiffMode.ABS), ("rel", info.rel, DiffMode.REL),
                                      ("ulp", info.ulp, DiffMode.ULP)):
                text.append(f"{name} ", style="bold" if this == mode else "dim")
                text.append(f"{value}  ", style="bold" if this == mode else "")
        self.update(text, layout=False)  # fixed height: repaint only
