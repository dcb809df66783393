"""The screens: the main debugger screen, the patch editor, help, find a tensor, ask for a number."""

from gradstep.tui.screens.find import FindScreen
from gradstep.tui.screens.help import HelpScreen
from gradstep.tui.screens.main import MainScreen
from gradstep.tui.screens.patch_editor import PatchEditor
from gradstep.tui.screens.prompt import NumberPrompt

__all__ = ["FindScreen", "HelpScreen", "MainScreen", "NumberPrompt", "PatchEditor"]
