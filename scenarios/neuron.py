"""Seed 001: one linear neuron, float64, per-sample SGD; NumPy and torch part at step 1.

The thread ("Single Linear layer network, train with SGD, different result with
Numpy implementation?") trains ``y = w*x + b`` on three samples of ``y = 2x + 3``,
one sample per step, lr 0.1, from w = 0.3, b = 0.1, once with ``nn.Linear`` +
``MSELoss`` + ``SGD`` and once with a hand-written ``Neuron``. The losses agree
at step 1 (1.44) but the weights do not (torch w 0.06, NumPy w 0.18). The answer:
the NumPy gradient ``grad_y = output - gt`` misses the 2 of ``d(output - gt)**2``;
the poster had dropped the 0.5 from the loss and not from its gradient.
"""

from __future__ import annotations

import numpy as np
import torch

from gradstep.scenario import (
    SAME,
    Batch,
    Hyper,
    Minibatches,
    NumpySide,
    Scenario,
    TensorMap,
    TorchSide,
    Variant,
    Weights,
    reshaped,
)

# --- data and shared initial weights -------------------------------------------------


def get_train_data() -> tuple[np.ndarray, np.ndarray]:
    X = np.linspace(-1.0, 1.0, 3)
    Y = 2 * X + 3
    return X, Y


def data(hp: Hyper) -> Minibatches:
    X, Y = get_train_data()
    # One scalar sample per step, in order, as the thread's `for i in range(len(X))`.
    return Minibatches({"x": X, "y": Y}, batch_size=1)


def init(hp: Hyper) -> Weights:
    # The thread's Neuron keeps w and b as (1, 1) arrays and sets w[0, 0] = 0.3, b[0] = 0.1.
    return {"w": np.full((1, 1), 0.3), "b": np.full((1, 1), 0.1)}


# --- NumPy side: the thread's Neuron, one function per piece -------------------------


def forward(weights: Weights, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    # A (1,) sample times the (1, 1) weight gives the thread's (1, 1) output.
    return {"output": batch["x"] * weights["w"] + weights["b"]}


def loss(acts: dict, batch: Batch, hp: Hyper) -> np.ndarray:
    output, gt = acts["output"], batch["y"]
    return (output - gt) ** 2


def backward(weights: Weights, acts: dict, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    output, gt = acts["output"], batch["y"]
    grad_y = output - gt  # as posted: d(output - gt)**2 / d output is 2 * (output - gt)
    grad_w = grad_y * batch["x"]
    grad_b = grad_y
    return {"w": grad_w, "b": grad_b, "output": grad_y}


def backward_fixed(weights: Weights, acts: dict, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    output, gt = acts["output"], batch["y"]
    grad_y = 2 * (output - gt)  # the answer: "you miss the 2*"
    grad_w = grad_y * batch["x"]
    grad_b = grad_y
    return {"w": grad_w, "b": grad_b, "output": grad_y}


def update(weights: Weights, grads: dict, state: dict, hp: Hyper) -> None:
    weights["w"] -= hp.lr * grads["w"]
    weights["b"] -= hp.lr * grads["b"]


# --- torch side: the thread's Net, MSELoss and SGD -------------------------------------


class Net(torch.nn.Module):
    def __init__(self, n_feature: int, n_hidden: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(n_feature, n_hidden, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        return x


def torch_model(hp: Hyper) -> Net:
    # The thread sets the default dtype to float64; here the run's dtype does that job.
    return Net(n_feature=1, n_hidden=1).to(device=hp.device, dtype=hp.torch_dtype)


def torch_forward(model: Net, batch: dict, hp: Hyper) -> dict[str, torch.Tensor]:
    net_input = torch.unsqueeze(batch["x"], dim=1)
    return {"output": model(net_input)}


def torch_loss(acts: dict, batch: dict, hp: Hyper) -> torch.Tensor:
    gt = torch.unsqueeze(batch["y"], dim=1)
    loss_func = torch.nn.MSELoss()
    return loss_func(acts["output"], gt)


def torch_optimizer(model: Net, hp: Hyper) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=hp.lr)


SCENARIO = Scenario(
    name="neuron",
    summary="One linear neuron, float64, per-sample SGD: the NumPy MSE gradient misses the 2",
    dtype="float64",
    seed=0,
    epochs=1,
    hyper={"lr": 0.1},
    data=data,
    init=init,
    numpy=NumpySide(forward=forward, loss=loss, backward=backward, update=update),
    torch=TorchSide(
        model=torch_model, forward=torch_forward, loss=torch_loss, optimizer=torch_optimizer
    ),
    mapping=(
        TensorMap("w", "fc.weight", SAME),
        TensorMap("b", "fc.bias", reshaped((1, 1), (1,))),
    ),
    variants={
        "as-posted": Variant("NumPy grad_y = output - gt, the factor 2 missing"),
        "fixed": Variant(
            "NumPy grad_y = 2 * (output - gt), as MSELoss", {"numpy.backward": backward_fixed}
        ),
    },
    notes=(
        "as-posted reproduces every number the thread prints for both sides: torch pred "
        "-0.19999999999999998, 0.34, 0.932, loss 1.44, 7.0756000000000006, "
        "16.548623999999997, w 0.06, 0.06, 0.8736, b 0.34, 0.872, 1.6856; NumPy pred -0.2, "
        "0.22, 0.678, loss 1.44, 7.7284, 18.679684, w 0.18, 0.18, 0.6122, b 0.22, 0.498, "
        "0.9302. The forward and the loss agree at step 1; grad w and grad b differ by "
        "exactly 2, and so does the gradient of the output. fixed agrees at every step."
    ),
)
