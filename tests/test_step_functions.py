"""Step functions and the rest of a real loop: what the contract promises, each part through the engine.

A small linear regression, float64, lets each test write the torch loop body
the way a user would (manual update, optimizer, clipping, no zero_grad, an
update before backward) and check what gradstep records against gradients
worked out by hand.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gradstep import patch as patching
from gradstep.cli import main
from gradstep.engine import Engine
from gradstep.patch import Patch, PatchError
from gradstep.scenario import Minibatches, NumpySide, Scenario, TensorMap, TorchSide, Variant

X = np.random.RandomState(4).randn(12, 3)
Y = X @ np.array([[1.0], [-2.0], [0.5]])
LR = 0.1


def data(hp):
    return Minibatches({"x": X, "y": Y}, 4)


def init(hp):
    return {"w": np.array([[0.1], [0.2], [-0.3]])}


def fresh_grad(w: np.ndarray, step: int) -> np.ndarray:
    """d mean((x @ w - y)**2) / dw on the step's batch: what a correct loop computes."""
    x, y = X[4 * (step % 3):4 * (step % 3) + 4], Y[4 * (step % 3):4 * (step % 3) + 4]
    return 2 * x.T @ (x @ w - y) / len(x)


def numpy_step(weights, batch, hp, state):
    w = weights["w"]
    err = batch["x"] @ w - batch["y"]
    loss = np.mean(err ** 2)
    dw = 2 * batch["x"].T @ err / len(err)
    w -= LR * dw
    return {"loss": loss, "pred": batch["x"] @ (w + LR * dw), "grad w": dw}


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3, 1, dtype=torch.float64))


def model(hp):
    return Linear()


def torch_manual(model, optimizer, batch, hp, state):
    pred = batch["x"] @ model.w
    loss = torch.mean((pred - batch["y"]) ** 2)
    loss.backward()
    with torch.no_grad():
        model.w -= LR * model.w.grad
    model.w.grad.zero_()
    return {"loss": loss, "pred": pred}


def scenario(numpy_side=None, torch_side=None, **fields) -> Scenario:
    fields = {"hyper": {}, "data": data, **fields}
    return Scenario(
        name="linear", summary="linear regression", dtype="float64", seed=0, epochs=2, init=init,
        numpy=numpy_side or NumpySide(step=numpy_step), torch=torch_side or TorchSide(model=model, step=torch_manual),
        mapping=[TensorMap("w", "w")], variants={"as-posted": Variant("as written"), "fixed": Variant("the same")},
        **fields,
    ).with_variant(None)


def recorded_grads(engine: Engine, steps: int) -> list[np.ndarray | None]:
    engine.run(steps=steps)
    return [engine.record(s).torch.get("grad w") for s in range(steps)]


def numpy_weights(engine: Engine, step: int) -> np.ndarray:
    return engine.record(step).numpy["before w"]


# ---- the data: three ways to sample, each step's rows recomputable ----------------------------


def test_minibatches_sample_in_order_by_permutation_or_with_replacement():
    arrays = {"x": np.arange(10), "y": np.arange(10) * 2}
    sequential = Minibatches(arrays, 3, drop_last=False)
    assert sequential.steps_per_epoch == 4 and list(sequential.batch(5, 3)["x"]) == [9]
    shuffled = Minibatches(arrays, 5, sample="shuffle", seed=3)
    older = Minibatches(arrays, 5, shuffle_seed=3)
    epoch = np.concatenate([shuffled.batch(1, i)["x"] for i in range(2)])
    assert sorted(epoch) == list(range(10)) and list(epoch) != list(range(10))
    assert all((older.batch(1, i)["x"] == shuffled.batch(1, i)["x"]).all() for i in range(2))
    drawn = Minibatches(arrays, 6, sample="replace", seed=1)
    assert drawn.steps_per_epoch == 1
    rows = [drawn.batch(e, 0)["x"] for e in range(4)]
    assert any(len(set(r)) < len(r) for r in rows)  # with replacement: repeats within a batch
    assert not all((rows[0] == r).all() for r in rows[1:])  # a new draw every step
    assert all((drawn.batch(e, 0)["x"] == rows[e]).all() for e in (3, 0, 2))  # the same, asked in any order
    assert (drawn.batch(2, 0)["y"] == rows[2] * 2).all()  # every array cut the same way


@pytest.mark.parametrize("options, message", [
    ({"sample": "random"}, "sample must be one of"),
    ({"sample": "replace", "shuffle_seed": 1}, "shuffle_seed=S means"),
])
def test_minibatches_refuse_what_they_cannot_mean(options, message):
    with pytest.raises(ValueError, match=message):
        Minibatches({"x": np.arange(4)}, 2, **options)


# ---- hp.step, hp.epoch, hp.index; integer batches ---------------------------------------------


def test_every_call_sees_its_step_and_integer_batches_reach_torch_as_int64():
    seen = []

    def where(hp):
        return np.array([hp.step, hp.epoch, hp.index, hp.steps_per_epoch])

    def labelled(hp):
        seen.append(("data", hp.step))
        return Minibatches({"x": X, "y": Y, "label": np.arange(12) % 3}, 4)

    def numpy_side(weights, batch, hp, state):
        return {**numpy_step(weights, batch, hp, state), "at": where(hp)}

    def torch_side(model, optimizer, batch, hp, state):
        assert batch["label"].dtype == torch.int64 and batch["x"].dtype == torch.float64
        return {**torch_manual(model, optimizer, batch, hp, state), "at": torch.as_tensor(where(hp))}

    engine = Engine(scenario(NumpySide(step=numpy_side), TorchSide(model=model, step=torch_side),
                             data=labelled), memory_mb=0.01)
    result = engine.run()
    assert result.parity and seen == [("data", 0)]
    for step in (0, 4, 5, 1):  # recomputed from checkpoints, in any order
        record = engine.record(step)
        assert list(record.numpy["at"]) == list(record.torch["at"]) == [step, step // 3, step % 3, 3]
        assert record.torch["label"].dtype == np.int64


# ---- the torch side's gradients, as the update reads them ----------------------------------


def test_a_manual_update_is_recorded_with_the_gradient_it_read_after_a_hand_made_change():
    def decayed(model, optimizer, batch, hp, state):
        loss = torch.mean((batch["x"] @ model.w - batch["y"]) ** 2)
        loss.backward()
        model.w.grad += 0.5 * model.w.detach()  # weight decay folded into .grad by hand, before the update
        with torch.no_grad():
            model.w -= LR * model.w.grad
        model.w.grad = None
        return {"loss": loss}

    engine = Engine(scenario(torch_side=TorchSide(model=model, step=decayed)))
    for step, grad in enumerate(recorded_grads(engine, 3)):
        w = engine.record(step).torch["before w"]
        np.testing.assert_allclose(grad, fresh_grad(w, step) + 0.5 * w, rtol=1e-12)


def test_an_update_made_before_backward_is_recorded_with_the_stale_gradient_it_used():
    def update_first(model, optimizer, batch, hp, state):
        loss = torch.mean((batch["x"] @ model.w - batch["y"]) ** 2)
        optimizer.step()  # the bug: steps on the gradient of the step before
        optimizer.zero_grad()
        loss.backward()
        return {"loss": loss}

    optimizer = lambda model, hp: torch.optim.SGD(model.parameters(), lr=LR)  # noqa: E731
    engine = Engine(scenario(torch_side=TorchSide(model=model, optimizer=optimizer, step=update_first)))
    grads = recorded_grads(engine, 3)
    # Step 0's update read no gradient (SGD skips it); step 1's read step 0's.
    assert grads[0] is not None  # ...but backward left one: the gradient as the step's backward left it
    w0 = engine.record(0).torch["before w"]
    np.testing.assert_allclose(grads[1], fresh_grad(w0, 0), rtol=1e-12)
    assert (engine.record(0).torch["after w"] == w0).all()
    assert engine.first_divergence is not None


def test_an_optimizer_step_is_recorded_with_the_clipped_gradient_it_read():
    def clipped(model, optimizer, batch, hp, state):
        optimizer.zero_grad()
        loss = torch.mean((batch["x"] @ model.w - batch["y"]) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        return {"loss": loss}

    optimizer = lambda model, hp: torch.optim.SGD(model.parameters(), lr=LR)  # noqa: E731
    engine = Engine(scenario(torch_side=TorchSide(model=model, optimizer=optimizer, step=clipped)))
    for step, grad in enumerate(recorded_grads(engine, 3)):
        g = fresh_grad(engine.record(step).torch["before w"], step)
        np.testing.assert_allclose(grad, g * min(1.0, 0.5 / np.linalg.norm(g)), rtol=1e-6)


def test_a_gradient_nobody_zeroes_is_recorded_as_the_running_sum():
    def never_zeroed(model, optimizer, batch, hp, state):
        loss = torch.mean((batch["x"] @ model.w - batch["y"]) ** 2)
        loss.backward()
        model.w.data = model.w.data - LR * model.w.grad  # no in-place write: the backward hook tells
        return {"loss": loss}

    engine = Engine(scenario(torch_side=TorchSide(model=model, step=never_zeroed)))
    grads = recorded_grads(engine, 3)
    total = np.zeros((3, 1))
    for step, grad in enumerate(grads):
        total = total + fresh_grad(engine.record(step).torch["before w"], step)
        np.testing.assert_allclose(grad, total, rtol=1e-12)
    assert engine.first_divergence.tensor == "grad w" and engine.first_divergence.step == 1


def test_activation_gradients_of_a_torch_step_are_recorded_when_numpy_reports_them():
    def numpy_with_act_grad(weights, batch, hp, state):
        out = numpy_step(weights, batch, hp, state)
        return {**out, "grad pred": 2 * (out["pred"] - batch["y"]) / len(batch["y"])}

    engine = Engine(scenario(NumpySide(step=numpy_with_act_grad)))
    result = engine.run()
    record = engine.record(2)
    assert "grad pred" in record.torch and result.parity
    np.testing.assert_allclose(record.torch["grad pred"], record.numpy["grad pred"], rtol=1e-12)


# ---- the rest of a real loop: a loss with the weights, a scheduler, a model given the init -------


def forward(weights, batch, hp):
    return {"pred": batch["x"] @ weights["w"]}


def l2_loss(acts, batch, hp, weights):
    return np.mean((acts["pred"] - batch["y"]) ** 2) + 0.5 * hp.reg * np.sum(weights["w"] ** 2)


def backward(weights, acts, batch, hp):
    return {"w": 2 * batch["x"].T @ (acts["pred"] - batch["y"]) / len(batch["y"]) + hp.reg * weights["w"]}


def decayed_update(weights, grads, state, hp):
    lr = LR * hp.gamma ** hp.epoch  # ExponentialLR stepped once an epoch
    weights["w"] -= lr * grads["w"]


def torch_forward(model, batch, hp):
    return {"pred": batch["x"] @ model.w}


def torch_l2_loss(acts, batch, hp, model):
    return torch.mean((acts["pred"] - batch["y"]) ** 2) + 0.5 * hp.reg * (model.w ** 2).sum()


def loaded(hp, weights):
    net = Linear()
    with torch.no_grad():
        net.w.copy_(torch.from_numpy(weights["w"]))
    return net


def test_pieces_take_the_weights_or_the_model_a_scheduler_and_a_model_that_loads_the_init():
    pieces = NumpySide(forward=forward, loss=l2_loss, backward=backward, update=decayed_update)
    side = TorchSide(model=loaded, forward=torch_forward, loss=torch_l2_loss,
                     optimizer=lambda m, hp: torch.optim.SGD(m.parameters(), lr=LR),
                     scheduler=lambda opt, hp: torch.optim.lr_scheduler.ExponentialLR(opt, hp.gamma),
                     scheduler_every="epoch")
    engine = Engine(scenario(pieces, side, share_init=False, hyper={"reg": 0.3, "gamma": 0.5}))
    assert engine.run().parity
    record = engine.record(4)  # epoch 1: half the learning rate
    w = record.numpy["before w"]
    plain = np.mean((X[4:8] @ w - Y[4:8]) ** 2)
    assert float(record.numpy["loss"]) == pytest.approx(plain + 0.15 * np.sum(w ** 2))
    np.testing.assert_allclose(record.numpy["after w"] - w, -0.05 * record.numpy["grad w"], rtol=1e-12)


@pytest.mark.parametrize("mixed", ["numpy pieces, torch step", "numpy step, torch pieces"])
def test_a_step_function_on_one_side_mixes_with_pieces_on_the_other(mixed):
    def update(weights, grads, state, hp):
        weights["w"] -= LR * grads["w"]

    def plain_loss(acts, batch, hp):
        return np.mean((acts["pred"] - batch["y"]) ** 2)

    def torch_loss(acts, batch, hp):
        return torch.mean((acts["pred"] - batch["y"]) ** 2)

    def torch_update(model, optimizer, state, hp):
        with torch.no_grad():
            model.w -= LR * model.w.grad
        model.w.grad = None

    hp = {"reg": 0.0}
    if mixed.startswith("numpy pieces"):
        built = scenario(NumpySide(forward, plain_loss, backward, update), hyper=hp)
    else:
        built = scenario(torch_side=TorchSide(model, torch_forward, torch_loss, update=torch_update), hyper=hp)
    engine = Engine(built)
    assert engine.run().parity and set(engine.record(5).torch) >= {"grad w", "pred", "loss", "after w"}


def test_the_local_rerun_of_a_numpy_step_starts_from_given_weights_and_keeps_nothing():
    engine = Engine(scenario())
    engine.run(steps=2)
    runner = engine.live.numpy
    own, state = {n: w.copy() for n, w in runner.weights.items()}, dict(runner.state)
    start = {"w": np.array([[1.0], [1.0], [1.0]])}
    out = runner.step(engine.live.data.batch(0, 1), weights=start)
    np.testing.assert_allclose(out["grad w"], fresh_grad(start["w"], 1), rtol=1e-12)
    assert (out["before w"] == 1).all() and (start["w"] == 1).all()  # the given weights are left as they were
    assert all((runner.weights[n] == own[n]).all() for n in own) and runner.state == state


# ---- patches and saved sessions of step functions ------------------------------------------------


def test_a_patch_of_a_step_function_replaces_the_whole_loop_body():
    base = scenario()
    assert patching.targets_for(base) == ["numpy.step", "torch.step", "torch.model"]  # a manual update: no optimizer
    with pytest.raises(PatchError, match=r"patch numpy\.step"):
        patching.compile_patch(base, Patch("numpy.backward", "def backward(w, a, b, hp):\n    return {}\n"))
    engine = Engine(base)
    engine.run(steps=2)
    halved = ("def numpy_step(weights, batch, hp, state):\n"
              "    w = weights['w']\n"
              "    err = batch['x'] @ w - batch['y']\n"
              "    dw = batch['x'].T @ err / len(err)  # half the gradient: a planted bug\n"
              "    w -= LR * dw\n"
              "    return {'loss': np.mean(err ** 2), 'pred': batch['x'] @ (w + LR * dw), 'grad w': dw}\n")
    patch = Patch("numpy.step", halved)
    patching.validate(engine, patch, 1)
    replayed = patching.replay(engine, base, [patch], steps=2)
    assert replayed.first_divergence.step == 0 and replayed.first_divergence.tensor == "grad w"
    assert patching.loads(patching.dumps([patch], base)) == [patch]
    wrong = Patch("numpy.step", "def numpy_step(weights, batch, hp, state):\n    return [1]\n")
    with pytest.raises(PatchError, match="returns a list"):
        patching.validate(engine, wrong, 1)


def test_a_run_with_step_functions_and_a_scheduler_saves_and_reopens(tmp_path):
    from gradstep.session_file import load, save

    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "two_layer_net.py"
    from gradstep.loader import load_scenario

    engine = Engine(load_scenario(str(example)), memory_mb=0.3)
    result = engine.run(steps=12)
    saved = save(engine, tmp_path / "run.gradstep", result)
    session = load(saved.path)
    assert session.scenario.name == "two_layer_net" and "def numpy_step" in session.scenario.source


# ---- contract errors: the user's file and line, exit 2 -----------------------------------------------


SCENARIO_FILE = '''
import numpy as np
import torch
from gradstep.scenario import Minibatches, NumpySide, Scenario, TensorMap, TorchSide, Variant

def data(hp):
    return Minibatches({{"x": np.ones((4, 1))}}, 2)

def init(hp):
    return {{"w": np.ones((1, 1))}}

def numpy_step(weights, batch, hp, state):
    return {numpy_returns}

def torch_step(model, optimizer, batch, hp, state):
    return {{"loss": torch.zeros(())}}

SCENARIO = Scenario(
    name="broken", summary="s", dtype="float64", seed=0, epochs=1, hyper={{}}, data=data, init=init,
    numpy=NumpySide({numpy_side}),
    torch=TorchSide(model=lambda hp: torch.nn.Linear(1, 1), step=torch_step{torch_extra}),
    variants={{"as-posted": Variant("a"), "fixed": Variant("b")}},
)
'''


@pytest.mark.parametrize("numpy_returns, numpy_side, torch_extra, message", [
    ("[1.0]", "step=numpy_step", "", ":12): StepContractError: a step function returns a dict"),
    ("{'acc': 1.0}", "step=numpy_step", "", "needs a 'loss' entry; it has 'acc'"),
    ("{'loss': 1.0, 'after w': 1}", "step=numpy_step", "", "'after w': gradstep records the weights"),
    ("{'loss': 1.0, 'update w': 1}", "step=numpy_step", "", "'update w': gradstep records the weights"),
    ("{'loss': 1.0}", "step=numpy_step, forward=data", "", "numpy has a step function and pieces too (forward)"),
    ("{'loss': 1.0}", "forward=data", "", "numpy needs a step function (step=...) or its pieces"),
    ("{'loss': 1.0}", "step=init", "", "takes other arguments than (weights, batch, hp, state)"),
    ("{'loss': 1.0}", "step=numpy_step", ", scheduler=lambda o, hp: None", "torch scheduler needs an optimizer"),
])
def test_contract_errors_name_the_file_and_line_and_exit_2(tmp_path, numpy_returns, numpy_side, torch_extra, message):
    path = tmp_path / "broken.py"
    path.write_text(SCENARIO_FILE.format(numpy_returns=numpy_returns, numpy_side=numpy_side, torch_extra=torch_extra))
    done = CliRunner().invoke(main, ["check", str(path)])
    assert done.exit_code == 2, done.output
    # The report folds long lines, a long temporary path mid-word too: compare without the whitespace.
    squeezed = "".join(done.output.split())
    assert "".join(message.split()) in squeezed and f"{path}:" in squeezed
    assert "Traceback" not in done.output


def test_a_variant_that_leaves_a_side_with_a_step_and_pieces_fails_the_file(tmp_path):
    base = scenario()
    broken = dataclasses.replace(base, variants={**base.variants, "fixed": Variant("x", {"numpy.forward": forward})})
    from gradstep.loader import _variant_problems

    assert _variant_problems(broken) == ["variant 'fixed': numpy has a step function and pieces too (forward): the "
                                         "step is the whole loop body, so give one or the other"]


# ---- in the app: a step function is one formula to patch ----------------------------------------


def test_the_app_patches_a_step_function_as_a_whole(tmp_path, monkeypatch):
    from gradstep.loader import load_scenario
    from gradstep.tui import create_app
    from gradstep.tui.screens import PatchEditor
    from tests.test_tui_helpers import apply_patch, editor_text, press, replace_line, run_async, settle

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "two_layer_net.py"
    app = create_app(Engine(load_scenario(str(example))))

    @run_async
    async def drive():
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)
            await press(pilot, "n", "n", "f")
            editor = app.screen
            assert isinstance(editor, PatchEditor)
            assert editor.session.targets == ["numpy.step", "torch.step", "torch.model", "torch.optimizer"]
            assert editor.target == "numpy.step" and "def numpy_step(weights, batch, hp, state):" in editor_text(pilot)
            assert app.debugger.engine.first_divergence.step == 1
            await replace_line(pilot, "if it % iterations_per_epoch == 0:",
                               "if (it + 1) % iterations_per_epoch == 0:", paste=True)
            await apply_patch(pilot)
            assert not isinstance(app.screen, PatchEditor)  # applied: the editor closed on the new comparison
            engine = app.debugger.engine
            assert engine.first_divergence is None and engine.next_step >= 2
            assert [p.target for p in engine.patches] == ["numpy.step"]

    drive()
