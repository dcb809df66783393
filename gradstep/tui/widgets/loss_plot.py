"""Both sides' loss over the steps run so far, the viewed step marked: drawn by textual-plotext."""

from __future__ import annotations

import time

import numpy as np
from textual.timer import Timer
from textual_plotext import PlotextPlot

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
            for column, label, marker, color in ((0, "NumPy", "•", "cyan"), (1, "torch", "+", "orange")):
                ys = losses[xs, column]
                keep = np.isfinite(ys)
                if keep.any():
                    plt.plot(xs[keep].tolist(), ys[keep].tolist(), label=label, marker=marker, color=color)
            if step >= 0:
                plt.vline(step, "red")
            plt.xlim(0, max(len(losses) - 1, 1))
            ticks = sorted({int(t) for t in np.linspace(0, len(losses) - 1, min(len(losses), 6)).round()})
            plt.xticks(ticks, [str(t) for t in ticks])
        self.refresh()
