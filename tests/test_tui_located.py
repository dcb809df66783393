"""The patch editor opens on the line the diagnosis points at (the line localiser's file and line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.tui import create_app
from gradstep.tui.screens import PatchEditor
from tests.test_tui_helpers import press, run_async, settle

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
SIGMOID = Path(__file__).parent / "fixtures" / "planted" / "wild" / "mlp_sigmoid.py"


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))


@run_async
async def test_the_editor_opens_on_the_line_the_diagnosis_names():
    app = create_app(Engine(load_scenario(str(SIGMOID), "as-posted")))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await press(pilot, "n")  # step 0 diverges and is diagnosed
        top = app.diagnosis.findings[0]
        assert (top.rule, top.function, Path(top.file).name) == ("line", "numpy.backward", "mlp_sigmoid.py")
        await press(pilot, "f")
        editor = app.screen
        assert isinstance(editor, PatchEditor) and editor.target == "numpy.backward"
        row = editor.text_area.cursor_location[0]
        assert editor.text_area.document.get_line(row).strip() == "dz1 = da1 * sigmoid_grad(z1)"
