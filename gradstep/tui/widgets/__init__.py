"""The widgets, one module per region of the main screen."""

from gradstep.tui.widgets.diagnosis_pane import DiagnosisPane, FindingList
from gradstep.tui.widgets.element_detail import ElementDetail
from gradstep.tui.widgets.key_footer import KeyFooter
from gradstep.tui.widgets.loss_plot import LossPlot
from gradstep.tui.widgets.navigator import TensorNavigator
from gradstep.tui.widgets.present_heading import PresentHeading
from gradstep.tui.widgets.run_bar import RunBar
from gradstep.tui.widgets.status_bar import ErrorBanner, StatusBar
from gradstep.tui.widgets.tensor_grid import TensorGrid

__all__ = [
    "DiagnosisPane",
    "ElementDetail",
    "ErrorBanner",
    "FindingList",
    "KeyFooter",
    "LossPlot",
    "PresentHeading",
    "RunBar",
    "StatusBar",
    "TensorGrid",
    "TensorNavigator",
]
