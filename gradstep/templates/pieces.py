"""__NAME__: a gradstep scenario. Replace each side with your own loop, piece by piece.

Written by `gradstep new __NAME__ --pieces` (without --pieces, each side is one
step function: the loop body as you wrote it). It runs as it is: `gradstep check __NAME__.py`
(the `fixed` variant is at parity; `as-posted` plants the classic bug, a NumPy
MSE gradient without its factor 2) and `gradstep __NAME__.py` opens it.

This file is Python and gradstep runs it with your rights. The contract is in
docs/scenarios.md; the order gradstep calls things in, once per step:
  NumPy:  forward(weights, batch, hp) -> loss(acts, batch, hp) -> backward(...) -> update(...)
  torch:  forward(model, batch, hp) -> loss(acts, batch, hp) -> backward -> update
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
    return Minibatches({"x": x, "y": y}, hp.batch_size)


# ---- initial weights, made once and given to both sides (NumPy layout) -----------------


def init(hp):
    return {
        "w1": np.random.randn(hp.inputs, hp.hidden) * 0.5,  # (in, out): torch's fc1.weight transposed
        "w2": np.random.randn(hp.hidden, 1) * 0.5,
    }


# ---- the NumPy side: your hand-written loop, one function per piece ----------------------


def forward(w, batch, hp):
    # Return every intermediate you want to see, by name; torch's forward uses the same names.
    h = np.tanh(batch["x"] @ w["w1"])
    out = h @ w["w2"]
    return {"h": h, "out": out}


def loss(acts, batch, hp):
    return np.mean((acts["out"] - batch["y"]) ** 2)


def backward_as_posted(w, acts, batch, hp):
    d_out = (acts["out"] - batch["y"]) / len(batch["y"])  # the planted bug: no factor 2
    return _backprop(w, acts, batch, d_out)


def backward(w, acts, batch, hp):
    d_out = 2 * (acts["out"] - batch["y"]) / len(batch["y"])  # d mean((out - y)**2) / d out
    return _backprop(w, acts, batch, d_out)


def _backprop(w, acts, batch, d_out):
    d_h = d_out @ w["w2"].T * (1 - acts["h"] ** 2)
    # Gradients of the weights, and of activations too if you have them ("out" here).
    return {"w1": batch["x"].T @ d_h, "w2": acts["h"].T @ d_out, "out": d_out}


def update(w, grads, state, hp):
    # In place, or return a new dict. `state` persists across steps (momentum...).
    w["w1"] -= hp.lr * grads["w1"]
    w["w2"] -= hp.lr * grads["w2"]


# ---- the torch side: your nn.Module, loss and optimizer -------------------------------


class Net(nn.Module):
    def __init__(self, hp):
        super().__init__()
        self.fc1 = nn.Linear(hp.inputs, hp.hidden, bias=False)
        self.fc2 = nn.Linear(hp.hidden, 1, bias=False)


def model(hp):
    return Net(hp)


def torch_forward(net, batch, hp):
    # The batch arrives as tensors on hp.device: floats in hp.torch_dtype, integer arrays (class
    # labels) as torch.int64, as CrossEntropyLoss wants them.
    h = torch.tanh(net.fc1(batch["x"]))
    return {"h": h, "out": net.fc2(h)}


def torch_loss(acts, batch, hp):
    return nn.functional.mse_loss(acts["out"], batch["y"])


def optimizer(net, hp):
    return torch.optim.SGD(net.parameters(), lr=hp.lr)


SCENARIO = Scenario(
    name="__NAME__",
    summary="a small tanh MLP: NumPy by hand against torch",
    dtype="float64",
    seed=0,
    epochs=5,
    hyper={"lr": 0.1, "samples": 64, "inputs": 3, "hidden": 8, "batch_size": 16},
    data=data,
    init=init,
    numpy=NumpySide(forward=forward, loss=loss, backward=backward_as_posted, update=update),
    torch=TorchSide(model=model, forward=torch_forward, loss=torch_loss, optimizer=optimizer),
    # NumPy name -> torch parameter (or activation) name, and the layout between them. The torch
    # names and shapes: [(n, tuple(p.shape)) for n, p in model(hp).named_parameters()]
    # ("0.weight", "2.bias"... in an nn.Sequential).
    mapping=[TensorMap("w1", "fc1.weight", TRANSPOSED), TensorMap("w2", "fc2.weight", TRANSPOSED)],
    # Both variants are required. Until you know the fix, "fixed": Variant("not found yet").
    variants={
        "as-posted": Variant("the NumPy gradient misses the factor 2 of the squared error"),
        "fixed": Variant("the NumPy gradient with its factor 2", {"numpy.backward": backward}),
    },
)
