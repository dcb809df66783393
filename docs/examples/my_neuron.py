"""my_neuron: the forum thread "Single Linear layer network, train with SGD, different
result with Numpy implementation?" as a gradstep scenario.

The finished file of the walkthrough in docs/scenarios.md ("Your own scenario, step
by step"): every code block there is a piece of this file, and
tests/test_walkthrough.py checks that they stay so and that this file reproduces
the numbers the thread printed.
"""

import numpy as np
import torch

from gradstep.scenario import SAME, Minibatches, NumpySide, Scenario, TensorMap, TorchSide, Variant, reshaped

# ---- data: one sample per step, in order ---------------------------------------------


def get_train_data():
    X = np.linspace(-1.0, 1.0, 3)
    Y = 2 * X + 3
    return X, Y


def data(hp):
    X, Y = get_train_data()
    return Minibatches({"x": X, "y": Y}, batch_size=1)


# ---- the initial weights, in the NumPy side's layout -------------------------------------


def init(hp):
    return {"w": np.full((1, 1), 0.3), "b": np.full((1, 1), 0.1)}


# ---- the NumPy side: the thread's Neuron, one function per piece ----------------------------


def forward(weights, batch, hp):
    output = batch["x"] * weights["w"] + weights["b"]
    return {"output": output}


def loss(acts, batch, hp):
    return (acts["output"] - batch["y"]) ** 2


def backward(weights, acts, batch, hp):
    grad_y = acts["output"] - batch["y"]  # as posted
    return {"w": grad_y * batch["x"], "b": grad_y, "output": grad_y}


def backward_fixed(weights, acts, batch, hp):
    grad_y = 2 * (acts["output"] - batch["y"])  # the answer: "you miss the 2*"
    return {"w": grad_y * batch["x"], "b": grad_y, "output": grad_y}


def update(weights, grads, state, hp):
    weights["w"] -= hp.lr * grads["w"]
    weights["b"] -= hp.lr * grads["b"]


# ---- the torch side: the thread's Net, MSELoss and SGD ---------------------------------------


class Net(torch.nn.Module):
    def __init__(self, n_feature, n_hidden):
        super().__init__()
        self.fc = torch.nn.Linear(n_feature, n_hidden, bias=True)

    def forward(self, x):
        return self.fc(x)


def model(hp):
    return Net(n_feature=1, n_hidden=1)


def torch_forward(net, batch, hp):
    net_input = torch.unsqueeze(batch["x"], dim=1)  # (1,) -> (1, 1), as the thread's
    return {"output": net(net_input)}


def torch_loss(acts, batch, hp):
    gt = torch.unsqueeze(batch["y"], dim=1)
    return torch.nn.MSELoss()(acts["output"], gt)


def optimizer(net, hp):
    return torch.optim.SGD(net.parameters(), lr=hp.lr)


# ---- the scenario ------------------------------------------------------------------------

SCENARIO = Scenario(
    name="my_neuron",
    summary="one linear neuron, per-sample SGD: NumPy by hand against nn.Linear",
    dtype="float64",
    seed=0,
    epochs=1,
    hyper={"lr": 0.1},
    data=data,
    init=init,
    numpy=NumpySide(forward=forward, loss=loss, backward=backward, update=update),
    torch=TorchSide(model=model, forward=torch_forward, loss=torch_loss, optimizer=optimizer),
    mapping=[
        TensorMap("w", "fc.weight", SAME),                    # (1, 1) on both sides
        TensorMap("b", "fc.bias", reshaped((1, 1), (1,))),   # NumPy (1, 1), torch (1,)
    ],
    variants={
        "as-posted": Variant("the thread's code: grad_y = output - gt"),
        "fixed": Variant("the answer's fix: grad_y = 2 * (output - gt)", {"numpy.backward": backward_fixed}),
    },
)
