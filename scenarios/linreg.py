"""Seed 003: linear regression ``f = w*x`` in float32; the NumPy gradient is 4x torch's.

The thread ("Pytorch convergence out-of-the-box") fits ``f = w*x`` to X = [1, 2, 3, 4],
Y = 2X, from w = 0, lr 0.01, 100 full-batch iterations: first by hand in NumPy,
then with autograd on a scalar tensor ``w`` and a manual update, then with
``nn.Linear``. The hand-written run converged far faster. The answer printed the
first gradients (torch -30.0, NumPy -120.0): ``np.dot(2*x, y_pred - y).mean()`` is
the mean of a scalar, so the 1/N of the MSE is never applied (a factor N = 4).
The poster then found the ``nn.Linear`` run slower still: it adds a bias, a
parameter the other two runs do not have.

The thread's ``w`` is a Python float that the first update turns into a NumPy
scalar, and its dtype depends on NumPy's promotion rules: under NumPy 1.x
``learning_rate * dw`` (Python float times float32 scalar) was float64, so the
answer printed ``w = 1.2000000``; under NumPy 2 (NEP 50) the Python float is
weak, the update stays float32, and ``w`` is 1.1999999 (float32 0.01 times 120).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

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

# f = w * x, here f = 2 * x
X = np.array([1, 2, 3, 4], dtype=np.float32)
Y = np.array([2, 4, 6, 8], dtype=np.float32)


def data(hp: Hyper) -> Minibatches:
    # Full batch: one step per epoch, as the thread's `for epoch in range(n_iters)`.
    return Minibatches({"x": X, "y": Y}, batch_size=len(X))


def init(hp: Hyper) -> Weights:
    # The thread's `w = 0.0`, kept as a 0-d float32 array so the update's dtype shows.
    return {"w": np.array(0.0, dtype=np.float32)}


# --- NumPy side: the thread's first snippet ------------------------------------------


def forward(weights: Weights, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    # model output
    return {"y_pred": weights["w"] * batch["x"]}


def loss(acts: dict, batch: Batch, hp: Hyper) -> np.ndarray:
    # loss = MSE
    return ((acts["y_pred"] - batch["y"]) ** 2).mean()


def gradient(weights: Weights, acts: dict, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    x, y, y_pred = batch["x"], batch["y"], acts["y_pred"]
    # J = MSE = 1/N * (w*x - y)**2
    # dJ/dw = 1/N * 2x(w*x - y)
    # As posted: np.dot already returns a scalar, so .mean() divides by nothing.
    return {"w": np.dot(2 * x, y_pred - y).mean()}


def gradient_fixed(weights: Weights, acts: dict, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    x, y, y_pred = batch["x"], batch["y"], acts["y_pred"]
    # dJ/dw = 1/N * 2x(w*x - y): the answer's division by N (4 samples)
    return {"w": np.dot(2 * x, y_pred - y) / len(x)}


def update(weights: Weights, grads: dict, state: dict, hp: Hyper) -> Weights:
    # w -= learning_rate * dw, rebinding w as the thread's global does: the result's
    # dtype is whatever the installed NumPy's promotion makes of float * float32.
    w = weights["w"] - hp.lr * grads["w"]
    return {"w": np.asarray(w)}


def forward_numpy1(weights: Weights, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    # NumPy 1.x: a float64 scalar times a float32 array stayed float32 (value-based casting).
    w = weights["w"].astype(batch["x"].dtype)
    return {"y_pred": w * batch["x"]}


def update_numpy1(weights: Weights, grads: dict, state: dict, hp: Hyper) -> Weights:
    # NumPy 1.x: learning_rate * dw (Python float times float32 scalar) was float64.
    dw = np.float64(grads["w"])
    w = weights["w"] - hp.lr * dw
    return {"w": np.asarray(w)}


# --- torch side: the thread's second snippet (autograd on a scalar w) ---------------


class ScalarW(nn.Module):
    """The thread's `w = torch.tensor(0.0, requires_grad=True)`, as a module."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.0))


def torch_model(hp: Hyper) -> nn.Module:
    return ScalarW().to(device=hp.device, dtype=hp.torch_dtype)


def torch_forward(model: nn.Module, batch: dict, hp: Hyper) -> dict[str, torch.Tensor]:
    # model output
    return {"y_pred": model.w * batch["x"]}


def torch_loss(acts: dict, batch: dict, hp: Hyper) -> torch.Tensor:
    # loss = MSE
    return ((acts["y_pred"] - batch["y"]) ** 2).mean()


def torch_backward(model: nn.Module, optimizer: None, loss: torch.Tensor, hp: Hyper) -> None:
    # calculate gradients = backward pass (zeroed after the update, not before)
    loss.backward()


def torch_update(model: nn.Module, optimizer: None, state: dict, hp: Hyper) -> None:
    w = model.w
    # update weights
    with torch.no_grad():
        w -= hp.lr * w.grad
    # zero the gradients after updating
    w.grad.zero_()


# --- torch side, variant nn-linear: the thread's third snippet ------------------------


class LinearRegression(nn.Module):
    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        # define diferent layers
        self.lin = nn.Linear(input_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def linear_model(hp: Hyper) -> nn.Module:
    model = LinearRegression(1, 1)
    return model.to(device=hp.device, dtype=hp.torch_dtype)


def linear_forward(model: nn.Module, batch: dict, hp: Hyper) -> dict[str, torch.Tensor]:
    # 0) Training samples, watch the shape! The thread's X is [[1], [2], [3], [4]].
    X = batch["x"].view(-1, 1)
    return {"y_pred": model(X)}


def linear_loss(acts: dict, batch: dict, hp: Hyper) -> torch.Tensor:
    loss = nn.MSELoss()
    Y = batch["y"].view(-1, 1)
    # The thread's argument order (target first); MSE is symmetric, so is its gradient.
    return loss(Y, acts["y_pred"])


def linear_optimizer(model: nn.Module, hp: Hyper) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=hp.lr)


def linear_update(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, hp: Hyper
) -> None:
    # update weights
    optimizer.step()
    # zero the gradients after updating
    optimizer.zero_grad()


NOTES = """\
as-posted: the thread's NumPy gradient np.dot(2*x, y_pred - y).mean(), which never
divides by N, against autograd on a scalar w with a manual update. Step 1: loss 30.0
on both sides, grad w torch -30.0, NumPy -120.0; after w torch 0.3 (0.3000000 with
:.7f), NumPy 1.1999999 in float32: this reproduces the installed NumPy 2 (NEP 50),
where lr * dw stays float32.
numpy1-promotion: as-posted with NumPy 1.x's promotion written out (lr * dw in
float64, w float64, the forward still in float32), which reproduces the answer's
printed NumPy line: w = 1.2000000.
fixed: the gradient divided by N; both sides agree at every step in float32.
nn-linear: the fixed NumPy side against the thread's third snippet, nn.Linear(1, 1)
with its bias (a torch-only parameter that keeps torch's seeded init), MSELoss and
SGD. Expected to diverge from step 1: the bias shifts torch's y_pred.
"""

SCENARIO = Scenario(
    name="linreg",
    summary="Linear regression f = w*x, float32: .mean() of a scalar, the 1/N never applied",
    dtype="float32",
    seed=0,
    epochs=100,
    hyper={"lr": 0.01},
    data=data,
    init=init,
    numpy=NumpySide(forward=forward, loss=loss, backward=gradient, update=update),
    torch=TorchSide(
        model=torch_model,
        forward=torch_forward,
        loss=torch_loss,
        backward=torch_backward,
        update=torch_update,
    ),
    mapping=(TensorMap("w", "w", SAME),),
    variants={
        "as-posted": Variant("NumPy gradient np.dot(2*x, y_pred - y).mean(): 4x torch's"),
        "numpy1-promotion": Variant(
            "as-posted, with NumPy 1.x type promotion: the update in float64",
            {"numpy.forward": forward_numpy1, "numpy.update": update_numpy1},
        ),
        "fixed": Variant("NumPy gradient divided by N", {"numpy.backward": gradient_fixed}),
        "nn-linear": Variant(
            "fixed NumPy against torch nn.Linear(1, 1) with its bias, MSELoss and SGD",
            {
                "numpy.backward": gradient_fixed,
                "torch": TorchSide(
                    model=linear_model,
                    forward=linear_forward,
                    loss=linear_loss,
                    optimizer=linear_optimizer,
                    backward=torch_backward,
                    update=linear_update,
                ),
                "mapping": (
                    TensorMap("w", "lin.weight", reshaped((), (1, 1))),
                    TensorMap("y_pred", "y_pred", reshaped((-1,), (-1, 1))),
                ),
            },
        ),
    },
    notes=NOTES,
)
