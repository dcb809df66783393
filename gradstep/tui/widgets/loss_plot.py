"""Both sides' loss over the steps run so far, the viewed step marked: drawn by textual-plotext."""

from __future__ import annotations

import time

import numpy as np
from textual.timer import Timer
from textual_plotext import PlotextPlot

from gradstep.tui.marks import palette_of

_MAX_POINTS = 400  # plotext is pure Python: thin long runs to about what the plot can show


class LossPlot(PlotextPlot):
    """Redrawn once stepping pauses (``SETTLE`` seconds), and at least every ``MAX_WAIT`` seconds meanwhile.

    plotext is pure Python (some 20 ms a drawing): a step press never waits
    for it, and holding a key down redraws about once a second.
    """

    SETTLE = 0.15
    MAX_WAIT = 1.0
    _pending: tuple[np.ndarray, int] | None = None
    _timer: Timer | None = None
    _since = 0.0

    def show_losses(self, losses: np.ndarray, step: int) -> None:
        self._pending = (losses, step)
        now = time.monotonic()
        if self._timer is None:
            self._since = now
            self._timer = self.set_timer(self.SETTLE, self._draw)
        elif now - self._since < self.MAX_WAIT:
            self._timer.reset()

    def _draw(self) -> None:
        self._timer = None
        if self._pending is None:
            return
        losses, step = self._pending
        self._pending = None
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss: NumPy (•) and torch (+)")
        if len(losses):
            stride = max(1, len(losses) // _MAX_POINTS)
            xs = np.arange(0, len(losses), stride)
            numpy_colour, torch_colour, step_colour = self._colours()
            for column, label, marker, color in ((0, "NumPy", "•", numpy_colour), (1, "torch", "+", torch_colour)):
                ys = losses[xs, column]
                keep = np.isfinite(ys)
                if keep.any():
                    plt.plot(xs[keep].tolist(), ys[keep].tolist(), label=label, marker=marker, color=color)
            if step >= 0:
                plt.vline(step, step_colour)
            plt.xlim(0, max(len(losses) - 1, 1))
            ticks = sorted({int(t) for t in np.linspace(0, len(losses) - 1, min(len(losses), 6)).round()})
            plt.xticks(ticks, [str(t) for t in ticks])
        self.refresh()

    def _colours(self) -> tuple:
        """NumPy's line, torch's and the step's marker in the theme's colours, readable on it (the marks'
        palette)."""
        return tuple(_plotext_colour(colour, default) for colour, default in
                     zip(palette_of(self.app).lines, ("cyan", "orange", "red"), strict=True))


def _plotext_colour(colour: str, default: str) -> str | tuple[int, int, int]:
    """``#rrggbb`` as plotext's RGB tuple; a colour name as it is; none: ``default``."""
    if colour.startswith("#"):
        return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    return colour or default
