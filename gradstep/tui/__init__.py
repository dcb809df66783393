"""The Textual debugger app. Only this sub-package imports Textual; it only calls the core.

The app is imported lazily, so the Textual-free parts (the debugger's session,
frames, patching) load without Textual, e.g. in ``benchmarks/bench_replay.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradstep.tui.app import GradstepApp, create_app

__all__ = ["GradstepApp", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gradstep.tui import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
