"""A scenario may map torch's optimizer state to the NumPy update's (Scenario.state_from_torch).

The local re-run then starts a step from torch's momentum buffer as it starts
from torch's weights, so an error made once in the state (here: NumPy's first
momentum buffer dampened) shows at the step that made it and not at every step
after, carried in by NumPy's own buffer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from gradstep.compare import Status
from gradstep.engine import Engine
from gradstep.scenario import TRANSPOSED, Minibatches, NumpySide, Scenario, TensorMap, TorchSide, Variant


def data(hp):
    rng = np.random.RandomState(0)
    x = rng.randn(32, 3)
    return Minibatches({"x": x, "y": x @ np.array([[1.0], [-2.0], [0.5]])}, batch_size=8)


def init(hp):
    return {"w": np.full((3, 1), 0.1)}


def forward(p, batch, hp):
    return {"out": batch["x"] @ p["w"]}


def loss(acts, batch, hp):
    return np.mean((acts["out"] - batch["y"]) ** 2)


def backward(p, acts, batch, hp):
    return {"w": batch["x"].T @ (2 * (acts["out"] - batch["y"])) / len(batch["y"])}


def update(p, grads, state, hp):
    g = grads["w"]
    # The planted bug: the first buffer dampened by (1 - momentum); torch's starts as the gradient itself.
    state["buffer"] = (1 - hp.momentum) * g if "buffer" not in state else hp.momentum * state["buffer"] + g
    p["w"] -= hp.lr * state["buffer"]


def torch_momentum(model, optimizer, torch_state, hp):
    buffer = optimizer.state.get(model.weight, {}).get("momentum_buffer")
    return {} if buffer is None else {"buffer": buffer.detach().numpy().T.copy()}


SCENARIO = Scenario(
    name="momentum-state", summary="a momentum buffer wrong at its first step", dtype="float64", seed=0, epochs=1,
    hyper={"lr": 0.05, "momentum": 0.9}, data=data, init=init,
    numpy=NumpySide(forward, loss, backward, update),
    torch=TorchSide(lambda hp: torch.nn.Linear(3, 1, bias=False), lambda m, b, hp: {"out": m(b["x"])},
                    lambda a, b, hp: torch.nn.functional.mse_loss(a["out"], b["y"]),
                    lambda m, hp: torch.optim.SGD(m.parameters(), lr=hp.lr, momentum=hp.momentum)),
    mapping=[TensorMap("w", "weight", TRANSPOSED)],
    variants={"as-posted": Variant("dampened first buffer"), "fixed": Variant("the same")},
)


def locally_diverged_updates(engine: Engine, step: int) -> list[str]:
    return [c.key for c in engine.compare(step, local=True) if c.key.startswith("after") and c.status >= Status.SHAPE]


def test_the_local_rerun_starts_from_torchs_optimizer_state_when_the_scenario_maps_it():
    plain, mapped = Engine(SCENARIO), Engine(dataclasses.replace(SCENARIO, state_from_torch=torch_momentum))
    plain.run()
    mapped.run()
    assert locally_diverged_updates(plain, 0) == locally_diverged_updates(mapped, 0) == ["after w"]
    assert locally_diverged_updates(plain, 2) == ["after w"]  # carried in by NumPy's own buffer
    assert locally_diverged_updates(mapped, 2) == []  # from torch's buffer, step 2's own update is right
    assert mapped.first_divergence.step == 0 and mapped.first_divergence.tensor == "update w"
