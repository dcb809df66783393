"""two_layer_net: docs/examples/two_layer_net_original.py as a gradstep scenario.

The worked example of docs/scenarios.md ("Paste your loop body here"). Each
side's loop body is pasted, as written, into one step function; what changed
is marked `# gradstep:`. tests/test_ported_loops.py checks that every other
line of the two loops is here unchanged.

The original's NumPy loop decays its learning rate when `it %
iterations_per_epoch == 0`, which is already true after the first step; its
torch loop decays at the end of every epoch with ExponentialLR. gradstep shows
the two updates part at step 1, by a factor of `learning_rate_decay`.
"""

import numpy as np
import torch
from torch import nn

from gradstep.scenario import TRANSPOSED, Minibatches, NumpySide, Scenario, TensorMap, TorchSide, Variant

num_train, input_size, hidden_size, num_classes = 500, 48, 32, 10
learning_rate_decay, reg = 0.9, 1e-3
batch_size, num_epochs = 50, 3
iterations_per_epoch = max(num_train // batch_size, 1)
std = 1e-1


def data(hp):
    # gradstep seeds np.random with the scenario's seed first: the same draws as the original.
    X = np.random.randn(num_train, input_size)
    y = np.argmax(X @ np.random.randn(input_size, num_classes), axis=1)
    # gradstep: np.random.choice(num_train, batch_size, replace=True) every step
    return Minibatches({"X": X, "y": y}, batch_size, sample="replace", seed=0)


def init(hp):
    W1 = std * np.random.randn(input_size, hidden_size)
    b1 = np.zeros(hidden_size)
    W2 = std * np.random.randn(hidden_size, num_classes)
    b2 = np.zeros(num_classes)
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}


# ---- NumPy: the loop body, as written ----------------------------------------------------


def numpy_step(weights, batch, hp, state):
    W1, b1, W2, b2 = weights["W1"], weights["b1"], weights["W2"], weights["b2"]  # gradstep: the weights
    X_batch, y_batch = batch["X"], batch["y"]  # gradstep: was X[idx], y[idx]
    it, learning_rate = hp.step, state.get("learning_rate", hp.learning_rate)  # gradstep: the loop's variables

    # forward pass
    h = np.maximum(0, X_batch.dot(W1) + b1)
    scores = h.dot(W2) + b2
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    probs = np.exp(shifted) / np.sum(np.exp(shifted), axis=1, keepdims=True)
    N = X_batch.shape[0]
    data_loss = -np.mean(np.log(probs[np.arange(N), y_batch]))
    loss = data_loss + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))

    # backward pass
    dscores = probs.copy()
    dscores[np.arange(N), y_batch] -= 1
    dscores /= N
    dW2 = h.T.dot(dscores) + reg * W2
    db2 = np.sum(dscores, axis=0)
    dh = dscores.dot(W2.T)
    dh[h <= 0] = 0
    dW1 = X_batch.T.dot(dh) + reg * W1
    db1 = np.sum(dh, axis=0)

    # parameter update
    W1 -= learning_rate * dW1
    b1 -= learning_rate * db1
    W2 -= learning_rate * dW2
    b2 -= learning_rate * db2

    if it % iterations_per_epoch == 0:
        learning_rate *= learning_rate_decay

    state["learning_rate"] = learning_rate  # gradstep: kept for the next step
    return {"loss": loss, "scores": scores, "grad W1": dW1, "grad b1": db1, "grad W2": dW2, "grad b2": db2}


# ---- torch: the loop body, as written ----------------------------------------------------

criterion = nn.CrossEntropyLoss()


def model(hp):
    return nn.Sequential(nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_classes))


def optimizer(model, hp):
    return torch.optim.SGD(model.parameters(), lr=hp.learning_rate)


def scheduler(optimizer, hp):
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=learning_rate_decay)


def torch_step(model, optimizer, batch, hp, state):
    X_batch, y_batch = batch["X"], batch["y"]  # gradstep: was torch.from_numpy(X[idx]).float(), ...

    scores = model(X_batch)
    loss = criterion(scores, y_batch) + 0.5 * reg * (model[0].weight.pow(2).sum() + model[2].weight.pow(2).sum())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": loss, "scores": scores}  # gradstep: what to compare


# ---- the fix: decay after an epoch's last step, as ExponentialLR does ------------------------


def numpy_step_fixed(weights, batch, hp, state):
    W1, b1, W2, b2 = weights["W1"], weights["b1"], weights["W2"], weights["b2"]
    X_batch, y_batch = batch["X"], batch["y"]
    it, learning_rate = hp.step, state.get("learning_rate", hp.learning_rate)

    h = np.maximum(0, X_batch.dot(W1) + b1)
    scores = h.dot(W2) + b2
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    probs = np.exp(shifted) / np.sum(np.exp(shifted), axis=1, keepdims=True)
    N = X_batch.shape[0]
    data_loss = -np.mean(np.log(probs[np.arange(N), y_batch]))
    loss = data_loss + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))

    dscores = probs.copy()
    dscores[np.arange(N), y_batch] -= 1
    dscores /= N
    dW2 = h.T.dot(dscores) + reg * W2
    db2 = np.sum(dscores, axis=0)
    dh = dscores.dot(W2.T)
    dh[h <= 0] = 0
    dW1 = X_batch.T.dot(dh) + reg * W1
    db1 = np.sum(dh, axis=0)

    W1 -= learning_rate * dW1
    b1 -= learning_rate * db1
    W2 -= learning_rate * dW2
    b2 -= learning_rate * db2

    if (it + 1) % iterations_per_epoch == 0:  # the fix: after the epoch's last step
        learning_rate *= learning_rate_decay

    state["learning_rate"] = learning_rate
    return {"loss": loss, "scores": scores, "grad W1": dW1, "grad b1": db1, "grad W2": dW2, "grad b2": db2}


SCENARIO = Scenario(
    name="two_layer_net",
    summary="a two-layer softmax net with L2 and per-epoch learning-rate decay, NumPy by hand against torch",
    dtype="float32",
    seed=0,
    epochs=num_epochs,
    hyper={"learning_rate": 0.5},
    data=data,
    init=init,
    numpy=NumpySide(step=numpy_step),
    torch=TorchSide(model=model, optimizer=optimizer, step=torch_step, scheduler=scheduler, scheduler_every="epoch"),
    mapping=[
        TensorMap("W1", "0.weight", TRANSPOSED),  # NumPy (in, out), nn.Linear (out, in)
        TensorMap("b1", "0.bias"),
        TensorMap("W2", "2.weight", TRANSPOSED),
        TensorMap("b2", "2.bias"),
    ],
    variants={
        "as-posted": Variant("the loops as written: NumPy decays the learning rate after step 0 already"),
        "fixed": Variant("NumPy decays after each epoch's last step", {"numpy.step": numpy_step_fixed}),
    },
)
