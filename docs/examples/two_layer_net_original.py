"""A two-layer softmax net trained twice, by hand in NumPy and with torch: the code a user brings.

Origin: written for gradstep's docs in the manner of the CS231n course's first
assignment (cs231n.github.io, "two_layer_net": a ReLU hidden layer, a softmax
loss with L2 on the weight matrices, minibatches drawn with
np.random.choice, and a learning rate that decays once per epoch), with the
usual torch port beside it (nn.Linear, CrossEntropyLoss, an explicit L2 term,
SGD and ExponentialLR). Synthetic CIFAR-shaped data keeps it self-contained.

docs/examples/two_layer_net.py is this file as a gradstep scenario: the two
loop bodies below are pasted into two step functions. Run this script on its
own with `python two_layer_net_original.py`.
"""

import numpy as np
import torch
from torch import nn

np.random.seed(0)
torch.manual_seed(0)

# ---- data: 500 samples of 48 features (a tiny CIFAR-10 stand-in), 10 classes ---------

num_train, input_size, hidden_size, num_classes = 500, 48, 32, 10
X = np.random.randn(num_train, input_size)
y = np.argmax(X @ np.random.randn(input_size, num_classes), axis=1)

# ---- hyper-parameters ------------------------------------------------------------------

learning_rate, learning_rate_decay, reg = 0.5, 0.9, 1e-3
batch_size, num_epochs = 50, 3
iterations_per_epoch = max(num_train // batch_size, 1)
num_iters = num_epochs * iterations_per_epoch
std = 1e-1

# ---- NumPy: the network by hand ------------------------------------------------------

W1 = std * np.random.randn(input_size, hidden_size)
b1 = np.zeros(hidden_size)
W2 = std * np.random.randn(hidden_size, num_classes)
b2 = np.zeros(num_classes)

for it in range(num_iters):
    idx = np.random.choice(num_train, batch_size, replace=True)
    X_batch, y_batch = X[idx], y[idx]

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

print("numpy", loss)

# ---- torch: the same network ---------------------------------------------------------

model = nn.Sequential(nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_classes))
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=learning_rate_decay)

for _epoch in range(num_epochs):
    for _i in range(iterations_per_epoch):
        idx = np.random.choice(num_train, batch_size, replace=True)
        X_batch, y_batch = torch.from_numpy(X[idx]).float(), torch.from_numpy(y[idx])

        scores = model(X_batch)
        loss = criterion(scores, y_batch) + 0.5 * reg * (model[0].weight.pow(2).sum() + model[2].weight.pow(2).sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scheduler.step()

print("torch", loss.item())
