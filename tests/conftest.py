from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def chaos_path() -> str:
    return str(FIXTURES / "chaos.py")


@pytest.fixture(autouse=True)
def _own_state_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's saved patches, drafts or sessions: the app now offers what it finds."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
