"""Update rules beyond a constant-rate SGD: which optimizer a side's updates follow, step by step.

Given one side's weights, gradients and updates Δw = after − before over its
first steps, each candidate rule turns the gradients into directions d_k, and
the step's learning rate is fitted alone: Δw_k = −lr_k · d_k. A rule fits when
every step's update is that multiple of its direction, to the updates' own
rounding. The candidates:

* SGD (d = g), which with a per-step rate covers learning-rate schedules;
* Adam, with and without bias correction (or one stuck at step 1), with ε inside the square root, with
  L2 weight decay in the gradient (``Adam(weight_decay=...)``) and decoupled
  (AdamW);
* RMSprop and Adagrad.

β1, β2, ε, α and the weight decay come from torch's optimizer where it is one
of these (its ``param_groups``), from the scenario's hyper-parameters, and from
torch's defaults. What SGD with momentum, dampening and weight decay at a
constant rate fits is left to :mod:`gradstep.diagnosis.rules.updates`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Direction = Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class Rule:
    name: str  # "Adam without bias correction"
    family: str  # "Adam", "RMSprop", "Adagrad", "SGD"
    constants: Mapping[str, float]
    directions: Direction
    decoupled_decay: float = 0.0  # AdamW: Δw = −lr·(d + λ·w)


@dataclass(frozen=True)
class RuleFit:
    rule: Rule
    lrs: np.ndarray  # the fitted learning rate of every step
    residual: float
    precision: float = 1e-9  # how close the fitted rates are to the true ones, relatively (the weights' rounding)

    @property
    def constant_lr(self) -> bool:
        return bool(np.all(np.abs(self.lrs - self.lrs[0]) <= 1e-6 * abs(self.lrs[0])))

    @property
    def name(self) -> str:
        return self.rule.name


@dataclass
class Settings:
    """The constants to try: each a list of candidate values, most likely first."""

    betas: list[tuple[float, float]] = field(default_factory=lambda: [(0.9, 0.999)])
    eps: list[float] = field(default_factory=lambda: [1e-8])
    alpha: list[float] = field(default_factory=lambda: [0.99])
    adagrad_eps: list[float] = field(default_factory=lambda: [1e-10])
    weight_decay: list[float] = field(default_factory=lambda: [0.0])
    preferred: str = ""  # torch's optimizer class, tried first


def settings_from(optimizer: Any, hyper: Mapping[str, Any]) -> Settings:
    """The constants of torch's optimizer and of the scenario's hyper-parameters."""
    s = Settings()
    groups = getattr(optimizer, "param_groups", None) or []
    for group in groups[:1]:
        if "betas" in group:
            s.betas.insert(0, tuple(float(b) for b in group["betas"]))
        if "eps" in group:
            (s.adagrad_eps if type(optimizer).__name__ == "Adagrad" else s.eps).insert(0, float(group["eps"]))
        if "alpha" in group:
            s.alpha.insert(0, float(group["alpha"]))
        if group.get("weight_decay"):
            s.weight_decay.append(float(group["weight_decay"]))
    if optimizer is not None:
        s.preferred = type(optimizer).__name__
    number = {k: float(v) for k, v in hyper.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    b1 = number.get("beta1", number.get("b1"))
    b2 = number.get("beta2", number.get("b2"))
    if isinstance(hyper.get("betas"), (tuple, list)) and len(hyper["betas"]) == 2:
        b1, b2 = (float(b) for b in hyper["betas"])
    if b1 is not None and b2 is not None:
        s.betas.insert(0, (b1, b2))
    for key in ("eps", "epsilon"):
        if key in number:
            s.eps.insert(0, number[key])
            s.adagrad_eps.insert(0, number[key])
    for key in ("alpha", "rho", "decay_rate"):
        if key in number:
            s.alpha.insert(0, number[key])
    for key in ("weight_decay", "wd"):
        if number.get(key):
            s.weight_decay.append(number[key])
    s.betas, s.eps, s.alpha = _unique(s.betas), _unique(s.eps), _unique(s.alpha)
    s.adagrad_eps, s.weight_decay = _unique(s.adagrad_eps), _unique(s.weight_decay)
    return s


def _unique(values: list) -> list:
    return list(dict.fromkeys(values))


# ---- the rules ---------------------------------------------------------------------------


def _adam(b1: float, b2: float, eps: float, correct: bool, eps_inside: bool, decay: float,
          frozen: bool = False) -> Direction:
    """Adam's directions; ``frozen``: the bias correction of step 1 at every step (a step counter never
    advanced)."""
    def directions(grads: list[np.ndarray], weights: list[np.ndarray]) -> list[np.ndarray]:
        m = v = None
        out = []
        for step, (g, w) in enumerate(zip(grads, weights, strict=True), start=1):
            g = g + decay * w if decay else g
            m = (1 - b1) * g if m is None else b1 * m + (1 - b1) * g
            v = (1 - b2) * g * g if v is None else b2 * v + (1 - b2) * g * g
            t = 1 if frozen else step
            m_hat, v_hat = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if correct else (m, v)
            out.append(m_hat / np.sqrt(v_hat + eps) if eps_inside else m_hat / (np.sqrt(v_hat) + eps))
        return out

    return directions


def _rmsprop(alpha: float, eps: float) -> Direction:
    def directions(grads: list[np.ndarray], weights: list[np.ndarray]) -> list[np.ndarray]:
        v, out = None, []
        for g in grads:
            v = (1 - alpha) * g * g if v is None else alpha * v + (1 - alpha) * g * g
            out.append(g / (np.sqrt(v) + eps))
        return out

    return directions


def _adagrad(eps: float) -> Direction:
    def directions(grads: list[np.ndarray], weights: list[np.ndarray]) -> list[np.ndarray]:
        s, out = None, []
        for g in grads:
            s = g * g if s is None else s + g * g
            out.append(g / (np.sqrt(s) + eps))
        return out

    return directions


def _sgd(grads: list[np.ndarray], weights: list[np.ndarray]) -> list[np.ndarray]:
    return list(grads)


def candidates(s: Settings) -> Iterator[Rule]:
    """Every rule to try, torch's own optimizer's family first."""
    rules: list[Rule] = [Rule("SGD", "SGD", {}, _sgd)]
    for b1, b2 in s.betas:
        for eps in s.eps:
            for decay in s.weight_decay:
                consts = {"beta1": b1, "beta2": b2, "eps": eps}
                coupled = {**consts, "weight_decay": decay} if decay else consts
                rules.append(Rule("Adam" + (" with L2 weight decay in the gradient" if decay else ""), "Adam", coupled,
                                  _adam(b1, b2, eps, True, False, decay)))
                if decay:
                    rules.append(Rule("AdamW, the weight decay decoupled from the gradient", "AdamW",
                                      {**consts, "weight_decay": decay}, _adam(b1, b2, eps, True, False, 0.0),
                                      decoupled_decay=decay))
                rules.append(Rule("Adam without bias correction", "Adam", coupled,
                                  _adam(b1, b2, eps, False, False, decay)))
                rules.append(Rule("Adam with ε inside the square root", "Adam", coupled,
                                  _adam(b1, b2, eps, True, True, decay)))
                rules.append(Rule("Adam with its bias correction stuck at step 1 (the step count t never advances)",
                                  "Adam", coupled, _adam(b1, b2, eps, True, False, decay, frozen=True)))
    for alpha in s.alpha:
        for eps in s.eps:
            rules.append(Rule("RMSprop", "RMSprop", {"alpha": alpha, "eps": eps}, _rmsprop(alpha, eps)))
    for eps in s.adagrad_eps:
        rules.append(Rule("Adagrad", "Adagrad", {"eps": eps}, _adagrad(eps)))
    yield from sorted(rules, key=lambda r: r.family != s.preferred)


# ---- fitting -------------------------------------------------------------------------------


def fit(deltas: list[np.ndarray], grads: list[np.ndarray], weights: list[np.ndarray], rule: Rule,
        noise: list[np.ndarray]) -> RuleFit | None:
    """The per-step learning rates with which ``rule`` gives ``deltas``, or None if it does not."""
    try:
        with np.errstate(all="ignore"):
            directions = rule.directions(grads, weights)
    except (FloatingPointError, ValueError):
        return None
    lrs, worst = [], 0.0
    for d, delta, w, n in zip(directions, deltas, weights, noise, strict=True):
        if rule.decoupled_decay:
            d = d + rule.decoupled_decay * w
        dd = float(np.sum(d * d))
        if not np.isfinite(dd):
            return None
        scale = float(np.max(np.abs(delta), initial=0.0))
        if dd == 0.0:
            if scale == 0.0:
                lrs.append(np.nan)
                continue
            return None
        lr = -float(np.sum(d * delta)) / dd
        miss = np.abs(delta + lr * d)
        if not np.all(miss <= n + 1e-7 * scale):
            return None
        lrs.append(lr)
        worst = max(worst, float(np.max(miss, initial=0.0)) / scale if scale else 0.0)
    rates = np.array(lrs)
    if np.isnan(rates).all():
        return None
    rates = np.where(np.isnan(rates), np.nanmean(rates), rates)
    return RuleFit(rule, rates, worst)


def first_fit(deltas: list[np.ndarray], grads: list[np.ndarray], weights: list[np.ndarray], settings: Settings,
              noise: list[np.ndarray]) -> RuleFit | None:
    """The first rule that fits at one learning rate; else the first that fits with a rate per step (a schedule).

    A constant rate comes first because a per-step rate absorbs any factor that changes only from step to step:
    Adam's bias correction is one, so without the constant-rate pass Adam would fit its uncorrected variant.
    """
    fits = []
    for rule in candidates(settings):
        found = fit(deltas, grads, weights, rule, noise)
        if found is not None and found.constant_lr:
            return found
        if found is not None:
            fits.append(found)
    return fits[0] if fits else None


def schedule_shift(numpy_lrs: np.ndarray, torch_lrs: np.ndarray, steps_per_epoch: int) -> int | None:
    """s with NumPy's rate at step k equal to torch's at step k + s (s > 0: NumPy's schedule is ahead)."""
    n = min(len(numpy_lrs), len(torch_lrs))
    if n < 2 or np.allclose(numpy_lrs[:n], torch_lrs[:n], rtol=1e-6):
        return None
    for shift in dict.fromkeys((1, steps_per_epoch, -1, -steps_per_epoch)):
        if shift == 0 or abs(shift) >= n:
            continue
        a = numpy_lrs[: n - shift] if shift > 0 else numpy_lrs[-shift:n]
        b = torch_lrs[shift:n] if shift > 0 else torch_lrs[: n + shift]
        if len(a) and np.allclose(a, b, rtol=1e-6) and not np.allclose(b, b[0], rtol=1e-6):
            return shift
    return None


# ---- the weight decay torch's optimizer adds to a gradient -----------------------------------

DECOUPLED = ("AdamW",)  # their decay is applied to the weights, not added to the gradient


def coupled_decay(engine: Any, numpy_name: str, like: np.ndarray) -> np.ndarray | float:
    """λ with which torch's optimizer adds λ·w to the gradient of each parameter ``numpy_name`` maps to (L2
    weight decay: SGD, Adam, RMSprop, Adagrad; AdamW's decoupled decay is not added), in NumPy's layout
    (``like``'s shape); one number when every piece has the same. 0.0 without an optimizer."""
    optimizer = engine.live.torch.optimizer
    mapping = next((m for m in engine.scenario.mapping if m.numpy == numpy_name), None)
    if optimizer is None or mapping is None:
        return 0.0
    params = engine.live.torch.params
    decays = [_group_decay(optimizer, params.get(t)) for t in mapping.torch_names]
    if len(set(decays)) == 1:
        return decays[0]
    parts = mapping.layout.to_torch(np.zeros(np.shape(like)))
    return np.asarray(mapping.layout.to_numpy(*[np.full(np.shape(p), d) for p, d in zip(parts, decays, strict=True)]))


def param_group(optimizer: Any, param: Any) -> dict:
    """The param group of ``optimizer`` that holds ``param`` ({} when none does, or without an optimizer)."""
    groups = getattr(optimizer, "param_groups", None) or []
    return next((g for g in groups if any(q is param for q in g["params"])), {})


def _group_decay(optimizer: Any, param: Any) -> float:
    group = param_group(optimizer, param)
    if not group or type(optimizer).__name__ in DECOUPLED or group.get("decoupled_weight_decay"):
        return 0.0
    return float(group.get("weight_decay", 0.0) or 0.0)
