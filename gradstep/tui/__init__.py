"""The Textual debugger app. Only this sub-package imports Textual; it only calls the core."""

from gradstep.tui.app import GradstepApp, create_app

__all__ = ["GradstepApp", "create_app"]
