"""Seed 000: fizzbuzz with a 10-100-4 sigmoid MLP, MSE, minibatch 64; four differences.

The thread ("Different behaviour in Numpy and Pytorch") trains fizzbuzz on the
binary encodings of 0..999 (a 90% split after ``np.random.permutation``), 1000
epochs of 14 minibatches of 64, lr 0.01, once by hand in NumPy (float64) and once
with raw torch tensors and autograd (float32, ``x_.mm(w1)``, a manual update). The
torch run "is jumping around" where NumPy converges. Found, one post at a time:

- torch's ``loss = error.pow(2).sum()`` has twice the gradient of the NumPy one,
  whose ``outerror = error`` is the gradient of ``sum(error**2) / 2``: "use
  ``loss=error.pow(2).sum()/2.``";
- torch never zeroes ``b1.grad``: "you missed ``b1.grad.data.zero_()``", so the
  hidden bias steps by the sum of all gradients so far;
- torch prints ``error.mean()`` where NumPy prints ``(error**2).mean()``;
- the NumPy ``hiddenerror = outerror.dot(w2.T)`` skips the output sigmoid's
  derivative: it should be ``outgrad.dot(w2.T)``.

Fixed, with seed 10000, the answer's runs print ``(999, 0.03878042474389076)``
(torch) and ``(999, 0.038780463080550241)`` (NumPy): the last minibatch's
``(error**2).mean()``, kept here as the loss-dict entry ``printed``. ``loss`` is
what each side differentiates. Lines of the scraped thread that mention ``grad``
are lost; the backward pass below is rebuilt from the surviving names and the
answer's formulas, and reproduces NumPy's number to the last digit and torch's to
1.2e-6 relative (float32 summation order differs from 2017's; a fused
``th.addmm(b1, x_, w1)`` would land within 1e-7, but the thread writes ``x_.mm(w1)``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gradstep.scenario import (
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

# --- data: the thread's x_y_gen, the same np.random stream as the thread ----------------


def binary_enc(num: int, input_size: int) -> list[int]:
    ret = [int(i) for i in f"{num:b}"]
    return [0] * (input_size - len(ret)) + ret


def training_test_gen(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    assert len(x) == len(y)
    indices = np.random.permutation(range(len(x)))
    split_size = int(0.9 * len(indices))
    trX = x[indices[:split_size]]
    trY = y[indices[:split_size]]
    teX = x[indices[split_size:]]
    teY = y[indices[split_size:]]
    return trX, trY, teX, teY


def x_y_gen(input_size: int) -> tuple[np.ndarray, ...]:
    x = []
    y = []
    for i in range(1000):
        x.append(binary_enc(i, input_size))
        if i % 15 == 0:
            y.append([1, 0, 0, 0])
        elif i % 5 == 0:
            y.append([0, 1, 0, 0])
        elif i % 3 == 0:
            y.append([0, 0, 1, 0])
        else:
            y.append([0, 0, 0, 1])
    return training_test_gen(np.array(x), np.array(y))


class FizzbuzzData(Minibatches):
    """The training minibatches in the thread's order (no reshuffle), and the test split."""

    def __init__(self, split: tuple[np.ndarray, ...], batches: int) -> None:
        trX, trY, teX, teY = split
        super().__init__({"x": trX, "y": trY}, batch_size=batches)
        self.test = {"x": teX, "y": teY}


def data(hp: Hyper) -> FizzbuzzData:
    # Integer arrays as in the thread: NumPy's products with them are float64.
    return FizzbuzzData(x_y_gen(hp.input_size), hp.batches)


def init(hp: Hyper) -> Weights:
    # Drawn after data()'s permutation, from the same seeded stream, as in the thread.
    w1 = np.random.randn(10, 100)
    w2 = np.random.randn(100, 4)
    b1 = np.zeros((1, 100))
    b2 = np.zeros((1, 4))
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


# --- NumPy side: the thread's loop, one function per piece ------------------------------


def sig(val: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-val))


def sig_d(val: np.ndarray) -> np.ndarray:
    sig_val = sig(val)
    return sig_val * (1 - sig_val)


def numpy_forward(weights: Weights, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    x, y = batch["x"], batch["y"]
    a2 = x.dot(weights["w1"]) + weights["b1"]
    h2 = sig(a2)
    a3 = h2.dot(weights["w2"]) + weights["b2"]
    hyp = sig(a3)
    error = hyp - y
    return {"a2": a2, "h2": h2, "a3": a3, "hyp": hyp, "error": error}


def numpy_loss(acts: dict, batch: Batch, hp: Hyper) -> dict[str, np.ndarray]:
    squared = acts["error"] ** 2
    # The backward's `outerror = error` differentiates sum(error**2) / 2; the thread
    # prints `loss = (error ** 2).mean()`.
    return {"loss": squared.sum() / 2.0, "printed": squared.mean()}


def numpy_backward_as_posted(weights: Weights, acts: dict, batch: Batch, hp: Hyper) -> dict:
    x, batches = batch["x"], hp.batches
    outerror = acts["error"]
    outgrad = outerror * sig_d(acts["a3"])
    outdelta = acts["h2"].T.dot(outgrad)
    outbiasdelta = np.ones([1, batches]).dot(outgrad)
    # As posted: the output error, not the output gradient, goes back through w2.
    hiddenerror = outerror.dot(weights["w2"].T)
    hiddengrad = hiddenerror * sig_d(acts["a2"])
    hiddendelta = x.T.dot(hiddengrad)
    hiddenbiasdelta = np.ones([1, batches]).dot(hiddengrad)
    weight_grads = {"w1": hiddendelta, "b1": hiddenbiasdelta, "w2": outdelta, "b2": outbiasdelta}
    # The activations' gradients too: they show which line of the backward parts from autograd.
    return {**weight_grads, "hyp": outerror, "a3": outgrad, "h2": hiddenerror, "a2": hiddengrad}


def numpy_backward_fixed(weights: Weights, acts: dict, batch: Batch, hp: Hyper) -> dict:
    x, batches = batch["x"], hp.batches
    outerror = acts["error"]
    outgrad = outerror * sig_d(acts["a3"])
    outdelta = acts["h2"].T.dot(outgrad)
    outbiasdelta = np.ones([1, batches]).dot(outgrad)
    # The answer's correction: the gradient at a3, not the error, goes back through w2.
    hiddenerror = outgrad.dot(weights["w2"].T)
    hiddengrad = hiddenerror * sig_d(acts["a2"])
    hiddendelta = x.T.dot(hiddengrad)
    hiddenbiasdelta = np.ones([1, batches]).dot(hiddengrad)
    weight_grads = {"w1": hiddendelta, "b1": hiddenbiasdelta, "w2": outdelta, "b2": outbiasdelta}
    # The activations' gradients too: they show which line of the backward parts from autograd.
    return {**weight_grads, "hyp": outerror, "a3": outgrad, "h2": hiddenerror, "a2": hiddengrad}


def numpy_update(weights: Weights, grads: dict, state: dict, hp: Hyper) -> None:
    lr = hp.lr
    weights["w1"] -= grads["w1"] * lr
    weights["b1"] -= grads["b1"] * lr
    weights["w2"] -= grads["w2"] * lr
    weights["b2"] -= grads["b2"] * lr


def score_test_split(hyp: np.ndarray, teY: np.ndarray) -> dict[str, float]:
    # The thread's "# test" block: argmax predictions, and its `np.mean(teY - hyp)`.
    return {
        "test accuracy": float(np.mean(hyp.argmax(axis=1) == teY.argmax(axis=1))),
        "test loss": float(np.mean(teY - hyp)),
    }


def numpy_metrics(weights: Weights, data: FizzbuzzData, hp: Hyper) -> dict[str, float]:
    hyp = numpy_forward(weights, data.test, hp)["hyp"]
    return score_test_split(hyp, data.test["y"])


# --- torch side: raw tensors and autograd, as in the thread -----------------------------


class RawWeights(nn.Module):
    """The thread's four leaf tensors w1, b1, w2, b2, held as parameters of one module."""

    def __init__(self, dtype: torch.dtype, device: str) -> None:
        super().__init__()
        # Placeholders: the mapping overwrites all four with init()'s NumPy weights.
        for name, shape in {"w1": (10, 100), "b1": (1, 100), "w2": (100, 4), "b2": (1, 4)}.items():
            placeholder = torch.zeros(shape, dtype=dtype, device=device)
            self.register_parameter(name, nn.Parameter(placeholder))


def torch_model(hp: Hyper) -> RawWeights:
    return RawWeights(hp.torch_dtype, hp.device)


def torch_forward(model: RawWeights, batch: dict, hp: Hyper) -> dict[str, torch.Tensor]:
    # The thread's Variable(th.from_numpy(trX[start:end]).type(dtype)): the integer arrays as floats.
    x_, y_ = batch["x"].type(hp.torch_dtype), batch["y"].type(hp.torch_dtype)
    a2 = x_.mm(model.w1) + model.b1
    h2 = a2.sigmoid()
    a3 = h2.mm(model.w2) + model.b2
    hyp = a3.sigmoid()
    error = hyp - y_
    return {"a2": a2, "h2": h2, "a3": a3, "hyp": hyp, "error": error}


def torch_loss_as_posted(acts: dict, batch: dict, hp: Hyper) -> dict[str, torch.Tensor]:
    error = acts["error"]
    # As posted, two of the differences (the printed value is a loss-dict entry): twice
    # NumPy's objective, and the plain mean error printed.
    loss = error.pow(2).sum()
    return {"loss": loss, "printed": error.detach().mean()}


def torch_loss_fixed(acts: dict, batch: dict, hp: Hyper) -> dict[str, torch.Tensor]:
    error = acts["error"]
    # The answer: "use loss=error.pow(2).sum()/2." and "print (error**2).mean()".
    loss = error.pow(2).sum() / 2.0
    return {"loss": loss, "printed": (error.detach() ** 2).mean()}


def torch_update_as_posted(model: RawWeights, optimizer: None, state: dict, hp: Hyper) -> None:
    w1, b1, w2, b2, lr = model.w1, model.b1, model.w2, model.b2, hp.lr
    with torch.no_grad():
        w1 -= lr * w1.grad
        b1 -= lr * b1.grad
        w2 -= lr * w2.grad
        b2 -= lr * b2.grad
    # As posted: b1.grad is never zeroed, so it accumulates over every step.
    w1.grad.zero_()
    w2.grad.zero_()
    b2.grad.zero_()


def torch_update_fixed(model: RawWeights, optimizer: None, state: dict, hp: Hyper) -> None:
    w1, b1, w2, b2, lr = model.w1, model.b1, model.w2, model.b2, hp.lr
    with torch.no_grad():
        w1 -= lr * w1.grad
        b1 -= lr * b1.grad
        w2 -= lr * w2.grad
        b2 -= lr * b2.grad
    w1.grad.zero_()
    b1.grad.zero_()  # the answer: "you missed b1.grad.data.zero_()"
    w2.grad.zero_()
    b2.grad.zero_()


def torch_metrics(model: RawWeights, data: FizzbuzzData, hp: Hyper) -> dict[str, float]:
    dtype, device = hp.torch_dtype, hp.device
    test = {n: torch.as_tensor(a, dtype=dtype, device=device) for n, a in data.test.items()}
    hyp = torch_forward(model, test, hp)["hyp"]
    return score_test_split(hyp.cpu().numpy(), data.test["y"])


NOTES = """\
as-posted: torch loss error.pow(2).sum() (2x NumPy's sum/2: the loss differs by 2 at
step 0, every gradient by 2 where NumPy's is right); torch never zeroes b1.grad (it
accumulates from step 1 on); torch prints error.mean(); the NumPy hiddenerror
outerror.dot(w2.T) misses sig_d(a3) (grad h2, a2, w1, b1 differ at step 0).
fixed: loss sum/2 on both sides, every grad zeroed, outgrad.dot(w2.T), both print
(error**2).mean(). After 1000 epochs `printed` at the last step is NumPy
0.03878046308055025 (the thread: 0.038780463080550241) and torch 0.03878038 (the
thread: 0.03878042474389076; float32, 1.2e-6 relative). Weights drift apart at float32
precision over the 14000 steps; per step, from the same weights, the sides agree.
Metrics per epoch: the thread's test block (argmax accuracy on the 100 test numbers,
and its `np.mean(teY - hyp)` as "test loss").
"""

SCENARIO = Scenario(
    name="fizzbuzz",
    summary="fizzbuzz 10-100-4 sigmoid MLP: torch loss 2x, b1.grad not zeroed, wrong hidden delta",
    dtype="float32",
    seed=10000,
    epochs=1000,
    hyper={"input_size": 10, "batches": 64, "lr": 0.01},
    data=data,
    init=init,
    numpy=NumpySide(
        forward=numpy_forward,
        loss=numpy_loss,
        backward=numpy_backward_as_posted,
        update=numpy_update,
        metrics=numpy_metrics,
    ),
    torch=TorchSide(
        model=torch_model,
        forward=torch_forward,
        loss=torch_loss_as_posted,
        update=torch_update_as_posted,
        metrics=torch_metrics,
    ),
    # Same names, same layout: every torch tensor takes init()'s NumPy weights.
    mapping=tuple(TensorMap(name, name) for name in ("w1", "b1", "w2", "b2")),
    variants={
        "as-posted": Variant(
            "torch loss sum (2x), b1.grad never zeroed, error.mean() printed, NumPy hiddenerror"
        ),
        "fixed": Variant(
            "torch loss sum/2, every grad zeroed, (error**2).mean() printed, outgrad.dot(w2.T)",
            {
                "numpy.backward": numpy_backward_fixed,
                "torch.loss": torch_loss_fixed,
                "torch.update": torch_update_fixed,
            },
        ),
    },
    notes=NOTES,
)
