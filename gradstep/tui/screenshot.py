"""Where the screenshot key saves: ``gradstep-SCENARIO-VARIANT-stepN-TIMESTAMP.svg`` (``-2`` ... when taken).

In ``$GRADSTEP_SCREENSHOT_DIR`` when set, else the current directory. The
name says what is on it, so a folder of workshop screenshots sorts by scenario
and step. Nothing here touches Textual.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

ENV_DIR = "GRADSTEP_SCREENSHOT_DIR"


def screenshot_path(scenario: str, variant: str, step: int, now: datetime | None = None) -> Path:
    """The file for a screenshot of ``step`` (negative: the start, before any step)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    where = "start" if step < 0 else f"step{step}"
    name = "-".join(_safe(part) for part in ("gradstep", scenario, variant, where, stamp))
    # Absolute: the message after saving must say where, whatever directory the app was started in.
    folder = Path(os.environ.get(ENV_DIR) or ".").expanduser().resolve()
    target, n = folder / f"{name}.svg", 1
    while target.exists():  # two screenshots within a second: the second gets -2, never overwrites
        n += 1
        target = folder / f"{name}-{n}.svg"
    return target


def _safe(part: str) -> str:
    """A scenario named after its file (``my scenario.py``) still gives a name every shell and OS takes."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part).strip("_.-") or "_"
