"""docs/scenarios.md's walkthrough: its code is docs/examples/my_neuron.py, which reproduces seed 001."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gradstep.cli import main
from gradstep.engine import Engine
from gradstep.loader import load_scenario

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "scenarios.md"
EXAMPLE = REPO / "docs" / "examples" / "my_neuron.py"

# What the thread printed after each of its three steps (see tests/test_seed_neuron.py).
TORCH_W, TORCH_B = ["[[0.06]]", "[[0.06]]", "[[0.8736]]"], ["[0.34]", "[0.872]", "[1.6856]"]
NUMPY_W, NUMPY_B = ["[[0.18]]", "[[0.18]]", "[[0.6122]]"], ["[[0.22]]", "[[0.498]]", "[[0.9302]]"]
NUMPY_LOSS = ["[[1.44]]", "[[7.7284]]", "[[18.679684]]"]
TORCH_LOSS = [1.44, 7.0756000000000006, 16.548623999999997]


def walkthrough() -> str:
    text = DOC.read_text()
    return text[text.index("## The pieces form, step by step"):text.index("## The fields")]


def blocks(fence: str) -> list[str]:
    return re.findall(rf"```{fence}\n(.*?)```", walkthrough(), flags=re.S)


def squeeze(text: str) -> str:
    return " ".join(text.split())


def test_every_python_block_is_part_of_the_example_file():
    source = EXAMPLE.read_text()
    shown = [b for b in blocks("python") if not b.startswith("# the thread's code")]
    assert len(shown) >= 10
    for block in shown:
        assert block in source, f"not in {EXAMPLE.name}:\n{block}"


def steps(name_or_path: str, variant: str) -> list:
    engine = Engine(load_scenario(name_or_path, variant))
    return [engine.step() for _ in range(engine.total_steps)]


def test_the_example_prints_the_threads_numbers():
    records = steps(str(EXAMPLE), "as-posted")
    assert len(records) == 3
    for i, rec in enumerate(records):
        assert str(rec.numpy["after w"]) == NUMPY_W[i] and str(rec.numpy["after b"]) == NUMPY_B[i]
        assert str(rec.numpy["loss"]) == NUMPY_LOSS[i]
        assert str(np.reshape(rec.torch["after w"], (1, 1))) == TORCH_W[i]
        assert str(np.reshape(rec.torch["after b"], (1,))) == TORCH_B[i]
        assert np.asarray(rec.torch["loss"]).item() == TORCH_LOSS[i]


@pytest.mark.parametrize("variant", ["as-posted", "fixed"])
def test_the_example_is_the_bundled_neuron_scenario_bit_for_bit(variant):
    for mine, bundled in zip(steps(str(EXAMPLE), variant), steps("neuron", variant), strict=True):
        for side in ("numpy", "torch"):
            ours, theirs = getattr(mine, side), getattr(bundled, side)
            assert ours.keys() == theirs.keys()
            for key in ours:
                np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{side} {key}")


def check(*args: str):
    # Wide enough that no line of the report is wrapped; the comparison ignores spacing anyway.
    return CliRunner(env={"COLUMNS": "200"}).invoke(main, ["check", str(EXAMPLE), *args])


def test_check_prints_what_the_walkthrough_shows():
    done = check()
    assert done.exit_code == 1
    printed = blocks("text")[0]
    output = squeeze(done.stdout)
    for line in printed.splitlines():
        if line.strip() and line.strip() != "...":
            assert squeeze(line) in output, line


def test_check_of_the_fixed_variant_is_parity():
    done = check("--variant", "fixed")
    assert done.exit_code == 0
    assert "PARITY: my_neuron (fixed), 3 steps" in done.stdout
