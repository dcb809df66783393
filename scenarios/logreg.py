"""Seed 004: logistic regression on a9a, single-sample SGD; torch 15% error, NumPy "30%".

The thread ("PyTorch vs NumPy SGD") trains logistic regression on LIBSVM's a9a
(32561 x 123 binary features, labels +-1) one sample at a time, in order, lr
0.001, from zero weights: once in torch (``nn.Linear(123, 1)``, ``BCELoss``,
``model.zero_grad(); loss.backward()``, ``param -= lr * param.grad``) reaching a
15% error rate, once in NumPy (``X = [1, x]``, ``SGDWithMomentum`` with momentum 0
and L2 1e-4) that "barely gets an error rate of 30%". The answer blames L2 on the
bias, zero init, no momentum, no shuffling and unstable logs.

Step by step the two sides hardly differ: the NumPy gradient adds ``l2_penalty * W``
(the bias included, against its own commented-out line and its loss, which exclude
it) and torch has no L2 at all. The 30% is the metric: in ``logreg_error`` the
predictions have shape (N,) and ``y`` (N, 1), so ``predictions != y`` broadcasts to
(N, N) and compares every prediction with every label. The NumPy side's metric is
that expression, evaluated a block of rows at a time (``logreg_error_broadcast``).
A model that predicts the positive class for a fraction q of the rows, with a
fraction p of positive labels, scores p + q (1 - 2p) there, whatever its accuracy.

a9a cannot be downloaded here: :func:`a9a_like` generates data of its shape from a
fixed seed. One epoch (the thread runs 10) gives the thread's figures: torch
0.1506, NumPy 0.3029.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gradstep.scenario import (
    Batch,
    Hyper,
    NumpySide,
    Scenario,
    TensorMap,
    TorchSide,
    Variant,
    Weights,
    bias_first,
    reshaped,
)

# --- data: synthetic a9a ------------------------------------------------------------------

# a9a one-hot encodes the 14 attributes of UCI Adult (age, workclass, fnlwgt, education,
# education-num, marital-status, occupation, relationship, race, sex, capital-gain,
# capital-loss, hours-per-week, native-country) into 123 binary columns.
A9A_ROWS = 32561
A9A_GROUPS = (5, 8, 5, 16, 5, 7, 14, 6, 5, 2, 2, 2, 5, 41)
# Adult's missing values ("?" in workclass, occupation, native-country): 13.87 ones per row.
A9A_MISSING = (0, 0.056, 0, 0, 0, 0, 0.057, 0, 0, 0, 0, 0, 0, 0.018)
# How much each attribute says about the label, Adult-like: relationship and marital
# status most, fnlwgt nothing.
A9A_SIGNAL = (1.2, 0.45, 0.0, 0.9, 1.2, 1.8, 0.9, 1.8, 0.3, 0.75, 2.25, 1.2, 0.9, 0.3)
A9A_POSITIVE = 7841 / 32561  # a9a's share of label +1
A9A_SEED = 1


def a9a_like(seed: int = A9A_SEED, rows: int = A9A_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic a9a: ``x_train`` (rows, 123) of 0/1 (uint8), ``y_train`` of +-1.0 (float64).

    Every row has one 1 per attribute (or none where the attribute is missing), its
    category drawn from a skewed (Zipf-like) distribution. Labels come from a planted
    logistic model: a weight per category (the stronger the more frequent, so that
    single-sample SGD learns most of it in one epoch) plus a bias that sets 24%
    positives, and Bernoulli noise. Trained to convergence, logistic regression
    misclassifies 11.8% of the rows; one epoch of the thread's SGD, 15.1%.
    A private ``RandomState`` keeps it independent of the global stream and stable
    across NumPy versions.
    """
    rng = np.random.RandomState(seed)
    starts = np.cumsum((0, *A9A_GROUPS[:-1]))
    cols = np.empty((rows, len(A9A_GROUPS)), dtype=np.intp)
    weights = np.empty(sum(A9A_GROUPS))
    for g, size in enumerate(A9A_GROUPS):
        p = rng.permutation(1.0 / np.arange(1, size + 1) ** 2)
        p /= p.sum()
        cols[:, g] = starts[g] + np.searchsorted(np.cumsum(p)[:-1], rng.rand(rows), side="right")
        w = rng.randn(size) * A9A_SIGNAL[g] * np.sqrt(p * size)
        weights[starts[g] : starts[g] + size] = w - p @ w  # centred: the bias sets the balance
    present = rng.rand(rows, len(A9A_GROUPS)) >= np.array(A9A_MISSING)
    score = np.where(present, weights[cols], 0.0).sum(axis=1)
    logits = score + _bias_for(score, A9A_POSITIVE)
    y_train = np.where(rng.rand(rows) < 1 / (1 + np.exp(-logits)), 1.0, -1.0)
    x_train = np.zeros((rows, sum(A9A_GROUPS)), dtype=np.uint8)
    x_train[np.nonzero(present)[0], cols[present]] = 1
    return x_train, y_train


def _bias_for(score: np.ndarray, positive: float) -> float:
    """The bias b with mean(sigmoid(score + b)) = positive, by bisection."""
    low, high = -20.0, 20.0
    for _ in range(50):
        mid = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(score + mid)))) > positive:
            high = mid
        else:
            low = mid
    return low


class SingleSamples:
    """One row per step, in order: the thread's loop with its shuffle commented out."""

    def __init__(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.X, self.Y = X, Y
        self.steps_per_epoch = len(X)

    def batch(self, epoch: int, index: int) -> Batch:
        # Row views, no copies: x_sample (124,), y_sample (1,).
        return {"x_sample": self.X[index], "y_sample": self.Y[index]}


def data(hp: Hyper) -> SingleSamples:
    x_train, y_train = a9a_like()
    X = np.hstack([np.ones((x_train.shape[0], 1)), x_train])  # Shape: (32561, 124)
    Y = ((y_train + 1) // 2).reshape(-1, 1)  # Shape: (32561, 1) and convert {-1, 1} to {0, 1}
    return SingleSamples(X, Y)


def init(hp: Hyper) -> Weights:
    # W[0] is the bias, for the column of ones.
    return {"W": np.zeros(hp.input_dim + 1)}  # Shape: (124,)


# --- the thread's NumPy functions, verbatim -------------------------------------------------


def logreg_loss(X: np.ndarray, y: np.ndarray, W: np.ndarray, l2_penalty: float) -> np.ndarray:
    """Compute the logistic regression loss for a single sample with L2 regularization."""
    logits = X @ W
    sigmoid = 1 / (1 + np.exp(-logits))  # Sigmoid function
    loss = -y * np.log(np.clip(sigmoid, 1e-9, 1 - 1e-9)) - (1 - y) * np.log(
        np.clip(1 - sigmoid, 1e-9, 1 - 1e-9)
    )  # Logistic loss for y in {0, 1}
    l2_loss = (l2_penalty / 2) * np.sum(W[1:] ** 2)  # Exclude bias from L2 regularization
    return loss + l2_loss


def logreg_error(X: np.ndarray, y: np.ndarray, W: np.ndarray) -> float:
    """Compute the misclassification error for the dataset."""
    logits = 1 / (1 + np.exp(-X @ W))
    predictions = (logits >= 0.5).astype(int)  # Predict 0 or 1 based on logits
    return np.mean(predictions != y)


def logreg_error_broadcast(X: np.ndarray, y: np.ndarray, W: np.ndarray, rows: int = 2048) -> float:
    """``logreg_error(X, y, W)``: the thread's own expression, over its (N, N) table a block of rows at a time.

    With predictions of shape (N,) and y of shape (N, 1), ``predictions != y`` is
    the table of every prediction against every label: 32561**2 booleans, 1 GB and
    ~7 s for ``np.mean``. The same comparison, ``predictions != y`` with y's rows
    taken ``rows`` at a time, builds each block of that table in turn (the same
    broadcast, which gradstep's sentinel sees), and its mean is the count of
    pairs that differ over N * N: the thread's value, bit for bit.
    """
    logits = 1 / (1 + np.exp(-X @ W))
    predictions = (logits >= 0.5).astype(int)  # Predict 0 or 1 based on logits
    differ = sum(int(np.count_nonzero(predictions != y[i : i + rows])) for i in range(0, len(y), rows))
    return differ / (predictions.size * len(y))


def logreg_error_fixed(X: np.ndarray, y: np.ndarray, W: np.ndarray) -> float:
    logits = 1 / (1 + np.exp(-X @ W))
    predictions = (logits >= 0.5).astype(int)
    return np.mean(predictions != y.reshape(-1))  # (N,) against (N,): one label per prediction


# --- NumPy side: SGDWithMomentum.step and logreg_loss, split into the four pieces ----------


def numpy_forward(weights: Weights, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    W = weights["W"]
    logits = batch["x_sample"] @ W
    sigmoid = 1 / (1 + np.exp(-logits))  # Sigmoid function
    # logreg_loss's regularizer, computed here because the loss sees activations, not W.
    l2_loss = (hp.l2_penalty / 2) * np.sum(W[1:] ** 2)  # Exclude bias from L2 regularization
    return {"logits": logits, "sigmoid": sigmoid, "l2_loss": l2_loss}


def numpy_loss(acts: dict, batch: Batch, hp: Hyper) -> np.ndarray:
    y, sigmoid = batch["y_sample"], acts["sigmoid"]
    loss = -y * np.log(np.clip(sigmoid, 1e-9, 1 - 1e-9)) - (1 - y) * np.log(
        np.clip(1 - sigmoid, 1e-9, 1 - 1e-9)
    )  # Logistic loss for y in {0, 1}
    # logreg_loss has y's shape (1,); torch's BCELoss is 0-d.
    return (loss + acts["l2_loss"])[0]


def numpy_backward_as_posted(weights: Weights, acts: dict, batch: Batch, hp: Hyper) -> dict:
    W, X, y, sigmoid = weights["W"], batch["x_sample"], batch["y_sample"], acts["sigmoid"]
    # As posted: the bias is regularized too, unlike in the loss.
    gradient = (sigmoid - y) * X + hp.l2_penalty * W
    return {"W": gradient, "logits": sigmoid - y[0]}


def numpy_backward_fixed(weights: Weights, acts: dict, batch: Batch, hp: Hyper) -> dict:
    W, X, y, sigmoid = weights["W"], batch["x_sample"], batch["y_sample"], acts["sigmoid"]
    # The thread's own commented-out line: the gradient of its loss.
    gradient = (sigmoid - y) * X + hp.l2_penalty * np.r_[[0], W[1:]]  # Regularization excludes bias
    return {"W": gradient, "logits": sigmoid - y[0]}


def numpy_update(weights: Weights, grads: dict, state: dict, hp: Hyper) -> None:
    velocity = state.get("velocity")
    if velocity is None:
        velocity = np.zeros_like(weights["W"])  # Initialize velocity with the same shape as W
    # Update velocity and weights
    velocity = hp.momentum * velocity - (1 - hp.momentum) * grads["W"]
    state["velocity"] = velocity
    weights["W"] += hp.learning_rate * velocity


def numpy_metrics_as_posted(weights: Weights, data: SingleSamples, hp: Hyper) -> dict[str, float]:
    # logreg_error(X, Y, W) as the thread calls it: its expression, a block of the (N, N) table at a time.
    return {"error": float(logreg_error_broadcast(data.X, data.Y, weights["W"]))}


def numpy_metrics_fixed(weights: Weights, data: SingleSamples, hp: Hyper) -> dict[str, float]:
    return {"error": float(logreg_error_fixed(data.X, data.Y, weights["W"]))}


# --- torch side: the thread's model, BCELoss and manual update ----------------------------


class LogisticRegression(nn.Module):
    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, 1)
        # Initialize weights to zero
        nn.init.constant_(self.linear.weight, 0)
        nn.init.constant_(self.linear.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x))


criterion = nn.BCELoss()


def torch_model(hp: Hyper) -> LogisticRegression:
    return LogisticRegression(hp.input_dim).to(device=hp.device, dtype=hp.torch_dtype)


def torch_forward_as_posted(model: LogisticRegression, batch: dict, hp: Hyper) -> dict:
    # x_train_tensor[i].unsqueeze(0): the row without the NumPy side's column of ones.
    x = batch["x_sample"][1:].unsqueeze(0)
    # model(x), in its two steps, to show the logits.
    logits = model.linear(x)
    return {"logits": logits, "sigmoid": torch.sigmoid(logits)}


def torch_forward_fixed(model: LogisticRegression, batch: dict, hp: Hyper) -> dict:
    acts = torch_forward_as_posted(model, batch, hp)
    # The NumPy side's L2, on the weights only (nn.Linear keeps the bias apart).
    acts["l2_loss"] = (hp.l2_penalty / 2) * model.linear.weight.pow(2).sum()
    return acts


def torch_loss_as_posted(acts: dict, batch: dict, hp: Hyper) -> torch.Tensor:
    return criterion(acts["sigmoid"], batch["y_sample"].unsqueeze(0))


def torch_loss_fixed(acts: dict, batch: dict, hp: Hyper) -> torch.Tensor:
    return criterion(acts["sigmoid"], batch["y_sample"].unsqueeze(0)) + acts["l2_loss"]


def torch_backward(
    model: LogisticRegression, optimizer: None, loss: torch.Tensor, hp: Hyper
) -> None:
    model.zero_grad()
    loss.backward()


def torch_update(model: LogisticRegression, optimizer: None, state: dict, hp: Hyper) -> None:
    # Manually update weights
    with torch.no_grad():
        for param in model.parameters():
            param -= hp.learning_rate * param.grad


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        outputs = model(x)
        return (outputs >= 0.5).float()


def torch_metrics(model: LogisticRegression, data: SingleSamples, hp: Hyper) -> dict[str, float]:
    x_train_tensor = torch.as_tensor(data.X[:, 1:], dtype=hp.torch_dtype, device=hp.device)
    y_train_tensor = torch.as_tensor(data.Y, dtype=hp.torch_dtype, device=hp.device)
    train_predictions = predict(model, x_train_tensor)
    train_accuracy = (train_predictions == y_train_tensor).float().mean()
    model.train()  # predict() left eval mode on; the thread's next epoch turns it back
    return {"error": 1 - train_accuracy.item()}


NOTES = """\
as-posted: the NumPy gradient regularizes all of W, the bias too (l2_penalty * W, where
logreg_loss and the thread's commented-out gradient leave the bias out); torch has no
L2. From equal weights the gradients differ by exactly l2_penalty * W: past float32
tolerance from step 661 (grad W), as the weights grow. The loss differs by l2_loss,
which only NumPy has. The epoch's "error": torch 1 - accuracy, 0.1506; NumPy
logreg_error, whose (N,) predictions against (N, 1) labels broadcast to every pair,
0.3029 (the thread's expression over blocks of rows, never the whole 1 GB table).
fixed: NumPy's own commented-out gradient (no L2 on the bias), the same L2 on
linear.weight in torch, the error over (N,) against (N,): both sides 0.1505, and every
step agrees within float32 tolerance from equal weights.
Data: synthetic, a9a's shape (a9a_like). Trained to convergence, logistic regression
misclassifies 11.8% of it; the thread's 10 epochs give 11.9% (NumPy's broadcast: 35%).
"""

SCENARIO = Scenario(
    name="logreg",
    summary="a9a logistic regression, single-sample SGD: (N, N) broadcast error rate, L2 on bias",
    dtype="float32",
    seed=0,
    epochs=1,
    hyper={"input_dim": 123, "learning_rate": 0.001, "l2_penalty": 0.0001, "momentum": 0.0},
    data=data,
    init=init,
    numpy=NumpySide(
        forward=numpy_forward,
        loss=numpy_loss,
        backward=numpy_backward_as_posted,
        update=numpy_update,
        metrics=numpy_metrics_as_posted,
    ),
    torch=TorchSide(
        model=torch_model,
        forward=torch_forward_as_posted,
        loss=torch_loss_as_posted,
        backward=torch_backward,
        update=torch_update,
        metrics=torch_metrics,
    ),
    mapping=(
        TensorMap("W", ("linear.bias", "linear.weight"), bias_first()),
        # NumPy's x_sample @ W is 0-d, torch's linear output (1, 1).
        TensorMap("logits", "logits", reshaped((), (1, 1))),
        TensorMap("sigmoid", "sigmoid", reshaped((), (1, 1))),
    ),
    variants={
        "as-posted": Variant(
            "NumPy: L2 on the bias too, error over an (N, N) broadcast; torch: no L2"
        ),
        "fixed": Variant(
            "L2 on the weights only on both sides, error over (N,) against (N,)",
            {
                "numpy.backward": numpy_backward_fixed,
                "numpy.metrics": numpy_metrics_fixed,
                "torch.forward": torch_forward_fixed,
                "torch.loss": torch_loss_fixed,
            },
        ),
    },
    notes=NOTES,
)
