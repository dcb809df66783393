"""Loops ported as written: each side's loop body pasted into one step function, its math lines unchanged.

Three loops a user would bring: the docs' worked example (a two-layer softmax
net, L2, per-epoch decay: CrossEntropyLoss + L2 + SGD + ExponentialLR), a torch
loop that never zeroes its gradients, and a torch model that loads the shared
weights itself and forgets a layer. Each keeps its bug, and gradstep names it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from gradstep.diagnosis import diagnose
from gradstep.engine import Engine
from gradstep.loader import load_scenario

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "docs" / "examples"
PORTED = Path(__file__).parent / "fixtures" / "ported"


def code_lines(text: str) -> list[str]:
    """The non-blank, non-comment lines of ``text``, stripped of indentation and trailing comments."""
    out = []
    for line in text.splitlines():
        code = re.sub(r"\s+#.*$", "", line).strip()
        if code and not code.startswith("#"):
            out.append(code)
    return out


def loop_body(source: str, header: str) -> list[str]:
    """The lines indented under the line ``header`` of ``source``."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == header)
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = []
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    return code_lines("\n".join(body))


def unchanged(original: list[str], ported: str, selects_batch: tuple[str, ...]) -> list[str]:
    """Lines of ``original`` missing from ``ported`` other than the loop headers and the batch selection."""
    ported_lines = set(code_lines(ported))
    return [line for line in original if line not in ported_lines
            and not line.startswith("for ") and not any(s in line for s in selects_batch)]


def run(path: Path, variant: str, steps: int | None = None) -> Engine:
    engine = Engine(load_scenario(str(path), variant))
    engine.run(steps=steps)
    return engine


# ---- the docs' worked example: two-layer softmax net, L2, learning-rate decay ----------------


def test_the_worked_example_pastes_both_loop_bodies_unchanged():
    original = (EXAMPLES / "two_layer_net_original.py").read_text()
    scenario = load_scenario(str(EXAMPLES / "two_layer_net.py"))
    numpy_loop = loop_body(original, "for it in range(num_iters):")
    torch_loop = loop_body(original, "for _i in range(iterations_per_epoch):")
    numpy_step, torch_step = (inspect.getsource(f) for f in (scenario.numpy.step, scenario.torch.step))
    batch = ("np.random.choice", "X[idx]")
    assert unchanged(numpy_loop, numpy_step, batch) == []
    assert unchanged(torch_loop, torch_step, batch) == []
    # What docs/scenarios.md promises: of the loops' 31 lines, 29 stay; the two functions add 7 of their own.
    kept = set(numpy_loop + torch_loop)
    added = [line for f in (numpy_step, torch_step) for line in code_lines(f)[1:] if line not in kept]
    assert len(numpy_loop) + len(torch_loop) == 31 and len(added) == 7, added


def test_the_worked_example_shows_where_the_learning_rates_part():
    engine = run(EXAMPLES / "two_layer_net.py", "as-posted", steps=3)
    first = engine.first_divergence
    # Step 0 agrees (both use 0.5); from step 1 the NumPy loop uses 0.45 and torch's ExponentialLR still 0.5.
    assert first.step == 1 and first.tensor.startswith("update ")
    record = engine.record(1)
    assert engine.trace.status[0].max() <= 1  # step 0: nothing out of tolerance beyond drift
    ratio = (record.numpy["after b2"] - record.numpy["before b2"]) / record.numpy["grad b2"]
    assert ratio == pytest.approx(-0.45)


def test_the_fixed_example_is_parity_and_its_scheduler_state_survives_recomputation():
    whole = run(EXAMPLES / "two_layer_net.py", "fixed")
    assert whole.result().parity and whole.next_step == 30
    # A trace too small to keep the run: old steps are recomputed from checkpoints, the scheduler's state too.
    small = Engine(load_scenario(str(EXAMPLES / "two_layer_net.py"), "fixed"), memory_mb=0.05)
    small.run()
    lrs = []
    for step in (9, 10, 20, 1):
        assert small.trace.recent(step) is None
        again, first = small.record(step), whole.record(step)
        for key in first.torch:
            assert (again.torch[key] == first.torch[key]).all(), key
        lrs.append(float(((again.torch["after b2"] - again.torch["before b2"]) / again.torch["grad b2"]).mean()))
    assert lrs == pytest.approx([-0.5, -0.45, -0.405, -0.5], rel=1e-5)


# ---- a torch loop that never zeroes its gradients -----------------------------------------


def test_a_loop_without_zero_grad_keeps_its_bug_and_gradstep_names_the_accumulation():
    module_scenario = load_scenario(str(PORTED / "no_zero_grad.py"))
    import sys

    module = sys.modules[module_scenario.numpy.step.__module__]
    batch = ("perm", "xb, yb =")
    assert unchanged(code_lines(module.ORIGINAL_NUMPY)[2:], inspect.getsource(module.numpy_step), batch) == []
    assert unchanged(code_lines(module.ORIGINAL_TORCH)[2:], inspect.getsource(module.torch_step), batch) == []
    assert "zero_grad" not in inspect.getsource(module.torch_step)

    engine = run(PORTED / "no_zero_grad.py", "as-posted", steps=6)
    assert (engine.first_divergence.step, engine.first_divergence.tensor[:5]) == (1, "grad ")
    top = diagnose(engine)[0]
    assert top.rule == "accumulation" and top.side == "torch" and top.function == "torch.step"
    assert "never zeroed" in top.cause and "torch.step" in top.cause
    assert run(PORTED / "no_zero_grad.py", "fixed").result().parity


# ---- a torch model that loads the shared weights itself, and forgets a layer -----------------


def test_a_model_that_loads_its_own_init_keeps_its_bug_and_gradstep_names_the_init():
    scenario = load_scenario(str(PORTED / "own_init.py"))
    import sys

    module = sys.modules[scenario.numpy.step.__module__]
    batch = ("(t - 1) * bs",)
    assert unchanged(code_lines(module.ORIGINAL_NUMPY), inspect.getsource(module.numpy_step), batch) == []
    setup = ("net = MLP(P)", "opt = torch.optim.Adam")
    torch_source = inspect.getsource(module.MLP) + inspect.getsource(module.torch_step)
    assert unchanged(code_lines(module.ORIGINAL_TORCH), torch_source, batch + setup) == []

    engine = run(PORTED / "own_init.py", "as-posted", steps=2)
    first = engine.first_divergence
    assert (first.step, first.tensor) == (0, "before W2")
    top = diagnose(engine)[0]
    assert top.rule == "init" and top.function == "torch.model"
    assert "W2, b2" in top.cause and "W1, b1, W3, b3" in top.cause
    assert "nn.Linear's default" in " ".join(top.evidence)
    assert run(PORTED / "own_init.py", "fixed").result().parity


# ---- docs/scenarios.md's worked example is these files, and prints what it shows ---------------


def worked_example() -> str:
    text = (REPO / "docs" / "scenarios.md").read_text()
    return text[text.index("## Paste your loop body here"):text.index("### What a step function receives")]


def test_the_docs_worked_example_quotes_its_files_and_its_output():
    text = worked_example()
    original = code_lines((EXAMPLES / "two_layer_net_original.py").read_text())
    ported = (EXAMPLES / "two_layer_net.py").read_text()
    python = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    quoted = [b for b in python if b.startswith("# the original")]
    assert len(quoted) == 2
    for block in quoted:
        for line in code_lines(block):
            assert line == "..." or line in original, line
    pasted = [b for b in python if not b.startswith("# the original") and "    ...  " not in b]
    assert len(pasted) >= 5
    for block in pasted:
        assert block in ported, block

    from click.testing import CliRunner

    from gradstep.cli import main

    done = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["check", str(EXAMPLES / "two_layer_net.py")])
    assert done.exit_code == 1
    printed = re.findall(r"```text\n(.*?)```", text, flags=re.S)[0].splitlines()[1:]
    output = " ".join(done.stdout.split())
    for line in printed:
        assert " ".join(line.removesuffix("...").split()) in output, line
