from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def chaos_path() -> str:
    return str(FIXTURES / "chaos.py")
