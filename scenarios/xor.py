"""Seed 002: XOR with a 2-5-1 sigmoid MLP; four differences between NumPy and torch.

The thread ("What is the difference between MLP implementation from scratch and in
PyTorch?") trains XOR, 4 samples full batch, 5000 epochs, lr 0.3, once by hand in
NumPy and once with ``nn.Sequential(Linear, Sigmoid, Linear, Sigmoid)``, ``MSELoss``
and ``SGD``, and gets different loss curves. The answer lists, most to least
important: (1) the two loops report different losses (the hand-written one logs
``layer2_error.mean()``, half the MSE times its derivative, not the MSE);
(2) the initial weights differ (``np.random.rand`` against torch's default init);
(3) ``nn.Linear`` adds biases the NumPy model does not have; (4) the NumPy gradient
``predicted - truth`` is that of ``sum/2`` while ``MSELoss`` is a mean over N = 4,
so the NumPy steps are N/2 = 2 times torch's: torch effectively runs at half the
learning rate. The answer's cure: same loss, torch's init for both, no bias, and
torch's lr doubled.

The torch side runs in float32; the NumPy side computes in float64 as the thread's
does: integer X and Y, float64 ``np.random.rand`` weights as posted. With the
answer's shared init the weights are torch's float32 arrays and stay float32, since
``W += ...`` casts back in place, while every activation and gradient is float64.
(Held in float64 instead, the fixed run drifts past float32 tolerance in step 4995 of 5000.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gradstep.scenario import (
    TRANSPOSED,
    Batch,
    Hyper,
    Minibatches,
    NumpySide,
    Scenario,
    TensorMap,
    TorchSide,
    Variant,
    Weights,
)

X = xor_input = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
Y = xor_output = np.array([[0, 1, 1, 0]]).T

# Define the shape of the weight vector.
num_data, input_dim = X.shape
# Define the shape of the output vector.
output_dim = len(Y.T)


def data(hp: Hyper) -> Minibatches:
    # Full batch: one step per epoch.
    return Minibatches({"x": X, "y": Y}, batch_size=num_data)


def init(hp: Hyper) -> Weights:
    # As posted: NumPy draws its own weights; torch keeps nn.Linear's default init.
    W1 = np.random.rand(input_dim, hp.hidden_dim)
    W2 = np.random.rand(hp.hidden_dim, output_dim)
    return {"W1": W1, "W2": W2}


def torch_weights(
    nodes_in: int, nodes_hidden: int, nodes_out: int, bias: bool | None = None
) -> list[np.ndarray]:
    # The answer's helper: torch's own init, drawn from the seeded torch generator.
    model = nn.Sequential(
        nn.Linear(nodes_in, nodes_hidden, bias=bias),
        nn.Sigmoid(),
        nn.Linear(nodes_hidden, nodes_out, bias=bias),
        nn.Sigmoid(),
    )
    return [t.detach().numpy() for t in model.parameters()]


def init_shared(hp: Hyper) -> Weights:
    # The answer's fix: torch's init for both sides. These arrays are float32 and stay
    # so (`W += ...` casts back in place); the products with X are still float64.
    W1, W2 = [w.T for w in torch_weights(input_dim, hp.hidden_dim, output_dim)]
    return {"W1": W1, "W2": W2}


# --- NumPy side: the answer's hand-rolled listing -------------------------------------


def sigmoid(x):  # Returns values that sums to one.
    return 1 / (1 + np.exp(-x))


def sigmoid_derivative(sx):
    # See https://math.stackexchange.com/a/1225116
    return sx * (1 - sx)


# Cost functions.
def mse(predicted, truth):
    return np.mean(np.square(predicted - truth))


def mse_as_posted(predicted, truth):
    # The question's mse, with the 0.5 that the answer's expansion of
    # layer2_error.mean() shows; the answer's listing (mse above) drops it.
    return 0.5 * np.mean(np.square(predicted - truth))


def mse_derivative(predicted, truth):
    return predicted - truth


def forward(weights: Weights, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    layer0 = batch["x"]
    # Forward propagation.
    layer1 = sigmoid(np.dot(layer0, weights["W1"]))
    layer2 = sigmoid(np.dot(layer1, weights["W2"]))
    return {"layer1": layer1, "layer2": layer2}


def loss(acts: dict, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    layer2, Y = acts["layer2"], batch["y"]
    cost_error = mse_as_posted(layer2, Y)
    cost_delta = mse_derivative(layer2, Y)
    layer2_error = np.dot(cost_delta, cost_error)
    # As posted, the logged loss: half the MSE times its derivative, averaged.
    # "mse" is the real MSE, the value torch's loss should be read against.
    return {"loss": layer2_error.mean(), "mse": mse(layer2, Y)}


def loss_fixed(acts: dict, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    cost_error = mse(acts["layer2"], batch["y"])
    # The answer: log the MSE itself, as torch's criterion does.
    return {"loss": cost_error, "mse": cost_error}


def backward(weights: Weights, acts: dict, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    layer0, layer1, layer2 = batch["x"], acts["layer1"], acts["layer2"]
    # Back propagation (Y -> layer2); predicted - truth is the gradient of sum/2.
    cost_delta = mse_derivative(layer2, batch["y"])
    layer2_delta = cost_delta * sigmoid_derivative(layer2)
    # Back propagation (layer2 -> layer1)
    layer1_error = np.dot(layer2_delta, weights["W2"].T)
    layer1_delta = layer1_error * sigmoid_derivative(layer1)
    return {
        "W1": np.dot(layer0.T, layer1_delta),
        "W2": np.dot(layer1.T, layer2_delta),
        "layer2": cost_delta,
    }


def backward_fixed(weights: Weights, acts: dict, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    layer0, layer1, layer2 = batch["x"], acts["layer1"], acts["layer2"]
    # The gradient of MSELoss, a mean over all N outputs: 2 * (predicted - truth) / N.
    cost_delta = 2 * (layer2 - batch["y"]) / layer2.size
    layer2_delta = cost_delta * sigmoid_derivative(layer2)
    layer1_error = np.dot(layer2_delta, weights["W2"].T)
    layer1_delta = layer1_error * sigmoid_derivative(layer1)
    return {
        "W1": np.dot(layer0.T, layer1_delta),
        "W2": np.dot(layer1.T, layer2_delta),
        "layer2": cost_delta,
    }


def update(weights: Weights, grads: dict, state: dict, hp: Hyper) -> None:
    # update weights
    weights["W2"] += -hp.lr * grads["W2"]
    weights["W1"] += -hp.lr * grads["W1"]


# --- torch side: the thread's nn.Sequential, MSELoss and SGD --------------------------


def torch_model(hp: Hyper) -> nn.Module:
    # Use Sequential to define a simple feed-forward network.
    model = nn.Sequential(
        # Use nn.Linear to get our simple perceptron.
        nn.Linear(input_dim, hp.hidden_dim, bias=hp.bias),
        # Use nn.Sigmoid to get our sigmoid non-linearity.
        nn.Sigmoid(),
        # Second layer neurons.
        nn.Linear(hp.hidden_dim, output_dim, bias=hp.bias),
        nn.Sigmoid(),
    )
    return model.to(device=hp.device, dtype=hp.torch_dtype)


def torch_forward(model: nn.Module, batch: dict, hp: Hyper) -> dict[str, torch.Tensor]:
    # predictions = model(X), split after the first sigmoid to show the hidden layer
    # The thread's tensor([[0,0], [0,1], [1,0], [1,1]]).float(): the integer X as floats.
    layer1 = model[:2](batch["x"].to(hp.torch_dtype))
    predictions = model[2:](layer1)
    return {"layer1": layer1, "layer2": predictions}


def torch_loss(acts: dict, batch: dict, hp: Hyper) -> dict[str, torch.Tensor]:
    criterion = nn.MSELoss()
    Y = batch["y"].to(hp.torch_dtype)  # the thread's tensor([[0],[1],[1],[0]]).float()
    # Calculate the cost between the predictions and the truth.
    loss = criterion(acts["layer2"], Y)
    # The answer's torch_losses_manual: np.mean((x - y)**2) of the predictions.
    manual = ((acts["layer2"] - Y) ** 2).mean().detach()
    return {"loss": loss, "mse": manual}


def torch_optimizer(model: nn.Module, hp: Hyper) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=hp.lr)


def torch_optimizer_double_lr(model: nn.Module, hp: Hyper) -> torch.optim.Optimizer:
    # The answer: learning_rate = 0.3 * 2 on the torch side only.
    return torch.optim.SGD(model.parameters(), lr=hp.lr * 2)


SHARED_INIT = (
    TensorMap("W1", "0.weight", TRANSPOSED),
    TensorMap("W2", "2.weight", TRANSPOSED),
)

NOTES = """\
as-posted: NumPy weights from np.random.rand, torch's nn.Linear default init with
biases (share_init=False: torch keeps its own init; W1/W2 still compare with
0.weight/2.weight, so the different init shows at step 0; 0.bias and 2.bias are
torch-only); NumPy logs layer2_error.mean()
as its loss (the question's mse, 0.5 * mean, times the derivative p - t), torch
MSELoss ("mse" holds the real MSE of each side); NumPy gradient of sum/2 against
MSELoss's mean: 2x torch's at equal weights. Diverges at step 1.
fixed: torch's init for both (W1 = 0.weight.T, W2 = 2.weight.T, drawn by the answer's
torch_weights helper), bias off, the NumPy loss the MSE, the NumPy gradient
2 * (p - t) / N, lr 0.3 on both sides. Agrees at every step within float32 tolerance.
answer: the answer's own cure: same init, bias off, MSE logged, the NumPy gradient
left as predicted - truth and torch's lr doubled (0.6). Weights, activations and
losses agree at every step, but every gradient still differs by a factor of 2 (N/2):
doubling torch's lr hides the factor rather than removing it.
"""

SCENARIO = Scenario(
    name="xor",
    summary="XOR 2-5-1 sigmoid MLP: loss reporting, init, nn.Linear bias and a factor 2 differ",
    dtype="float32",
    seed=0,
    epochs=5000,
    hyper={"lr": 0.3, "hidden_dim": 5, "bias": True},
    data=data,
    init=init,
    numpy=NumpySide(forward=forward, loss=loss, backward=backward, update=update),
    torch=TorchSide(
        model=torch_model, forward=torch_forward, loss=torch_loss, optimizer=torch_optimizer
    ),
    mapping=SHARED_INIT,
    share_init=False,
    variants={
        "as-posted": Variant(
            "rand init vs torch init, torch biases, layer2_error.mean() logged, NumPy step 2x"
        ),
        "fixed": Variant(
            "shared torch init, no bias, MSE logged, NumPy gradient of MSELoss, same lr",
            {
                "init": init_shared,
                "share_init": True,
                "hyper.bias": False,
                "numpy.loss": loss_fixed,
                "numpy.backward": backward_fixed,
            },
        ),
        "answer": Variant(
            "the answer's cure: shared init, no bias, MSE logged, torch lr doubled",
            {
                "init": init_shared,
                "share_init": True,
                "hyper.bias": False,
                "numpy.loss": loss_fixed,
                "torch.optimizer": torch_optimizer_double_lr,
            },
        ),
    },
    notes=NOTES,
)
