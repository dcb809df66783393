"""__NAME__: a gradstep scenario. Paste each side's training-loop body into its step function.

Written by `gradstep new __NAME__`. It runs as it is: `gradstep check __NAME__.py`
(the `fixed` variant is at parity; `as-posted` keeps a classic bug, a torch loop
that never calls optimizer.zero_grad()) and `gradstep __NAME__.py` opens it.

This file is Python and gradstep runs it with your rights. The contract is in
docs/scenarios.md. Once per step, on the same minibatch and from the same
weights, gradstep calls
  numpy_step(weights, batch, hp, state)          your NumPy loop body: forward, loss, gradients, update
  torch_step(model, optimizer, batch, hp, state) your torch loop body, exactly as written
and compares what they return, the gradients torch's update read and both sides'
weights before and after. `gradstep new __NAME__ --pieces` writes the other form:
forward, loss, backward and update as separate functions.
"""

import numpy as np
import torch
from torch import nn

from gradstep.scenario import (
    TRANSPOSED,
    Minibatches,
    NumpySide,
    Scenario,
    TensorMap,
    TorchSide,
    Variant,
)

# ---- data: a deterministic sequence of minibatches ---------------------------------


def data(hp):
    # Runs after np.random.seed(SEED): draw from np.random freely, it is reproducible.
    x = np.random.randn(hp.samples, hp.inputs)
    y = np.tanh(x @ np.random.randn(hp.inputs, 1))
    # sample: "sequential" (in order), "shuffle" (a new permutation every epoch) or "replace"
    # (np.random.choice(n, batch_size) every step). Any step's rows can be drawn again.
    return Minibatches({"x": x, "y": y}, hp.batch_size, sample="shuffle", seed=0)


# ---- initial weights, made once and given to both sides (NumPy layout) -----------------


def init(hp):
    return {
        "w1": np.random.randn(hp.inputs, hp.hidden) * 0.5,  # (in, out): torch's fc1.weight transposed
        "w2": np.random.randn(hp.hidden, 1) * 0.5,
    }


# ---- NumPy: paste your loop body here --------------------------------------------------


def numpy_step(weights, batch, hp, state):
    # Your loop's variables: the weights (update them in place), the batch, your hyper-parameters
    # (hp.lr), the position (hp.step, hp.epoch, hp.index) and `state`, a dict kept between steps.
    w1, w2 = weights["w1"], weights["w2"]
    x, y = batch["x"], batch["y"]

    # ---- your loop body, as written ----
    h = np.tanh(x @ w1)
    out = h @ w2
    loss = np.mean((out - y) ** 2)
    d_out = 2 * (out - y) / len(y)
    d_h = d_out @ w2.T * (1 - h ** 2)
    dw1, dw2 = x.T @ d_h, h.T @ d_out
    w1 -= hp.lr * dw1
    w2 -= hp.lr * dw2

    # What to compare: "loss" (and any scalar you print), activations by name, gradients as
    # "grad NAME" (of a weight, or of an activation: torch's is recorded for you).
    return {"loss": loss, "h": h, "out": out, "grad w1": dw1, "grad w2": dw2, "grad out": d_out}


# ---- torch: your nn.Module, optimizer, and loop body -----------------------------------


class Net(nn.Module):
    def __init__(self, hp):
        super().__init__()
        self.fc1 = nn.Linear(hp.inputs, hp.hidden, bias=False)
        self.fc2 = nn.Linear(hp.hidden, 1, bias=False)


def model(hp):
    # model(hp, weights) is given init()'s weights too, for a model that loads them itself
    # (then set share_init=False below, and your loading code is what gets tested).
    return Net(hp)


def optimizer(net, hp):
    return torch.optim.SGD(net.parameters(), lr=hp.lr)


def torch_step(net, optimizer, batch, hp, state):
    # The batch arrives as tensors on hp.device: floats in hp.torch_dtype, integer arrays as int64.
    x, y = batch["x"], batch["y"]

    # ---- your loop body, as written ----
    h = torch.tanh(net.fc1(x))
    out = net.fc2(h)
    loss = nn.functional.mse_loss(out, y)
    loss.backward()  # as posted: no optimizer.zero_grad() first, so the gradients add up step after step
    optimizer.step()

    return {"loss": loss, "h": h, "out": out}


def torch_step_fixed(net, optimizer, batch, hp, state):
    x, y = batch["x"], batch["y"]
    h = torch.tanh(net.fc1(x))
    out = net.fc2(h)
    loss = nn.functional.mse_loss(out, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": loss, "h": h, "out": out}


SCENARIO = Scenario(
    name="__NAME__",
    summary="a small tanh MLP: NumPy by hand against torch",
    dtype="float64",
    seed=0,
    epochs=5,
    hyper={"lr": 0.1, "samples": 64, "inputs": 3, "hidden": 8, "batch_size": 16},
    data=data,
    init=init,
    numpy=NumpySide(step=numpy_step),
    # scheduler=lambda optimizer, hp: torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.9) and
    # scheduler_every="epoch" (or "step") add the learning-rate scheduler your loop steps.
    torch=TorchSide(model=model, optimizer=optimizer, step=torch_step),
    # NumPy name -> torch parameter (or activation) name, and the layout between them. The torch
    # names and shapes: [(n, tuple(p.shape)) for n, p in model(hp).named_parameters()]
    # ("0.weight", "2.bias"... in an nn.Sequential).
    mapping=[TensorMap("w1", "fc1.weight", TRANSPOSED), TensorMap("w2", "fc2.weight", TRANSPOSED)],
    # Both variants are required. Until you know the fix, "fixed": Variant("not found yet").
    variants={
        "as-posted": Variant("the torch loop never zeroes its gradients"),
        "fixed": Variant("optimizer.zero_grad() before backward", {"torch.step": torch_step_fixed}),
    },
)
