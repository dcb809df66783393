"""The update rule: learning rate, momentum, dampening, weight decay; and an L2 term in a gradient.

Update rule. When the gradients agree and the new weights do not, each side's
own update is fitted, over the first steps of its own run, to

    Δw_k = a·Δw_(k-1) + c·g_k + e·w_k

(SGD with momentum a, learning rate −c, dampening and weight decay e/c;
plain SGD is a = e = 0), separately for each torch parameter a NumPy weight
maps to, so a decay applied to the bias shows. The two fits are compared.

L2 in the gradient. When NumPy's gradient minus torch's is k·w for one
constant k (within the rounding noise of the gradients), one side adds an L2
penalty's gradient k·w that the other does not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gradstep import keys
from gradstep.diagnosis.findings import Finding, num
from gradstep.diagnosis.numeric import close, constant_ratio, fit_coefficient, lower_eps
from gradstep.diagnosis.optimizers import (
    RuleFit,
    Settings,
    coupled_decay,
    first_fit,
    param_group,
    schedule_shift,
    settings_from,
)
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.rules.ratios import gradcheck_line
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import factor_text, join_names, nice, worst_line

FIT_STEPS = 8
MAX_FIT_STEPS = 64  # a bound on the records a fit reads: the rule is the same at every step


@dataclass(frozen=True)
class UpdateFit:
    """One side's update of one parameter as SGD: lr, momentum (classic or Nesterov, dampened or not),
    weight decay."""

    lr: float
    momentum: float
    weight_decay: float
    residual: float
    nesterov: bool = False
    dampening: float = 0.0  # torch's form: v = m·v + (1 − d)·g after a first step of v = g
    precision: float = 1e-9  # how close its constants are to the true ones, relatively (the weights' rounding)

    def nice(self, value: float) -> str:
        """A constant of this fit in a sentence: 0.9 for a float32 fit's 0.8999999725."""
        return nice(value, self.precision)


def _decay(c: dict[str, float]) -> float:
    """The weight decay λ a fit reads (0 without a w term). A negative one (weights pushed away from 0) is no
    decay: on a bias that starts at 0 the w term can stand in for a gradient of the step before."""
    return c.get("w", 0.0) / c["g"]


def _classic(c: dict[str, float]) -> UpdateFit | None:
    """Δw_k = m·Δw_(k-1) − lr·(g_k + λ·w_k): SGD, with momentum m and weight decay λ where fitted."""
    m = c.get("prev", 0.0)
    if not (c["g"] < 0 and -1e-9 <= m <= 1.0 + 1e-9 and _decay(c) >= 0):
        return None
    return UpdateFit(lr=-c["g"], momentum=m, weight_decay=_decay(c), residual=0.0)


def _nesterov(c: dict[str, float]) -> UpdateFit | None:
    """torch's Nesterov: v_k = m·v_(k-1) + g_k, Δw_k = −lr·(g_k + m·v_k), which is
    Δw_k = m·Δw_(k-1) − lr·(1 + m)·g_k + lr·m·g_(k-1) (g with λ·w added under weight decay)."""
    m = c["prev"]
    if not (c["g"] < 0 and 1e-6 < m <= 1.0 + 1e-9):
        return None
    lr, decay = -c["g"] / (1 + m), _decay(c)
    if decay < 0 or not close(c["gprev"], lr * m, 1e-3) or \
            abs(c.get("wprev", 0.0) - lr * m * decay) > 1e-3 * lr * decay:
        return None
    return UpdateFit(lr=lr, momentum=m, weight_decay=decay, residual=0.0, nesterov=True)


def _dampened(c: dict[str, float]) -> UpdateFit | None:
    """torch's dampening d: the first step takes the whole gradient (v = g), later ones (1 − d)·g:
    Δw_0 = −lr·(g_0 + λ·w_0), Δw_k = m·Δw_(k-1) − lr·(1 − d)·(g_k + λ·w_k)."""
    m, lr = c["prev"], -(c["g"] + c["g0"])
    if not (lr > 0 and 1e-6 < m <= 1.0 + 1e-9 and c["g"] < 0):
        return None
    dampening, decay = 1 - c["g"] / -lr, _decay(c)
    first_decay = c.get("w0", 0.0) + c.get("w", 0.0)
    if decay < 0 or not 1e-6 < dampening < 1 or abs(first_decay + lr * decay) > 1e-3 * lr * abs(decay):
        return None
    return UpdateFit(lr=lr, momentum=m, weight_decay=decay, residual=0.0, dampening=dampening)


# Simplest first: a form with more terms fits whatever a simpler one does.
MODELS = ((("g",), _classic), (("g", "prev"), _classic), (("g", "w"), _classic), (("g", "prev", "w"), _classic),
          (("g", "prev", "gprev"), _nesterov), (("g", "prev", "gprev", "w", "wprev"), _nesterov),
          (("g", "prev", "g0"), _dampened), (("g", "prev", "g0", "w", "w0"), _dampened))


# ---- the update rule -------------------------------------------------------------------


def update_rule_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    if probe is None:
        return []
    out = []
    for name in view.weights:
        after, grad = keys.after(name), keys.grad(name)
        if any(np.asarray(view.free_numpy.get(k, 0.0)).dtype.kind in "iub" for k in (keys.before(name), after)):
            continue  # the control: integer weights truncate every update; the integer rule says so
        if after in view.diverged and view.agrees(grad):
            finding = _compare_updates(view, probe, name)
            if finding is not None:
                out.append(finding)
    return out


def _update_features(deltas: list[np.ndarray], grads: list[np.ndarray], weights: list[np.ndarray]
                     ) -> dict[str, np.ndarray]:
    """Every term an SGD form may have, each the steps' elements end to end (steps from 0)."""
    def flat(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.ravel(x) for x in arrays]).astype(np.float64)

    zero = np.zeros(np.size(deltas[0]))
    later = [zero] * (len(deltas) - 1)
    return {"g": flat(grads), "w": flat(weights),
            "prev": flat([zero, *deltas[:-1]]), "gprev": flat([zero, *grads[:-1]]),
            "wprev": flat([zero, *weights[:-1]]), "g0": flat([grads[0], *later]), "w0": flat([weights[0], *later])}


def fit_update(deltas: list[np.ndarray], grads: list[np.ndarray], weights: list[np.ndarray],
               noise: list[np.ndarray], eps: float = 0.0) -> UpdateFit | None:
    """The simplest SGD form that reproduces ``deltas`` from ``grads`` and ``weights`` (steps from 0), every
    element within its ``noise``; ``eps``, the weights' machine epsilon, says how precise its constants are."""
    d = np.concatenate([np.ravel(x) for x in deltas]).astype(np.float64)
    scale = float(np.max(np.abs(d), initial=0.0))
    if scale == 0 or not np.isfinite(d).all():
        return None
    features = _update_features(deltas, grads, weights)
    allowed = np.concatenate([np.ravel(x) for x in noise]) + 1e-7 * scale
    precision = max(1e-9, 100 * eps)
    for model, interpret in MODELS:
        x = np.stack([features[f] for f in model], axis=1)
        # Two equations more than unknowns at least: a one-element bias over three steps fits anything exactly.
        if len(d) < len(model) + 2 or np.linalg.matrix_rank(x) < len(model):
            continue
        beta, *_ = np.linalg.lstsq(x, d, rcond=None)
        miss = np.abs(x @ beta - d)
        fits = bool(np.all(miss <= allowed))
        fitted = interpret(dict(zip(model, (float(b) for b in beta), strict=True))) if fits else None
        if fitted is not None:
            return replace(fitted, residual=float(np.max(miss)) / scale, precision=precision)
    return None


@dataclass
class Series:
    """One side's updates of one weight over steps from 0, in float64, with each element's rounding noise."""

    deltas: list[np.ndarray]
    grads: list[np.ndarray]
    weights: list[np.ndarray]
    noise: list[np.ndarray]
    eps: float = 0.0


def _side_series(probe: Probe, side: str, name: str, steps: range) -> Series | None:
    series = Series([], [], [], [])
    eps = 0.0
    for step in steps:
        tensors = getattr(probe.record(step), side)
        w, g, a = (tensors.get(k(name)) for k in (keys.before, keys.grad, keys.after))
        if w is None or g is None or a is None:
            return None
        eps = max(eps, lower_eps(np.asarray(w), np.asarray(a)))
        w64, a64 = np.asarray(w, dtype=np.float64), np.asarray(a, dtype=np.float64)
        series.deltas.append(a64 - w64)
        series.grads.append(np.asarray(g, dtype=np.float64))
        series.weights.append(w64)
        series.noise.append(4 * (np.abs(w64) + np.abs(a64)))
    # The weights' own rounding, and the momentum buffer's, which grows with the update's scale.
    scale = max((float(np.max(np.abs(d), initial=0.0)) for d in series.deltas), default=0.0)
    series.noise = [eps * (n + 16 * scale) for n in series.noise]
    series.eps = eps
    return series


def _pieces(probe: Probe, name: str, series: Series) -> dict[str, Series]:
    """``series`` split into the torch parameters ``name`` maps to (the whole of it when it maps to one)."""
    names = probe.torch_names(name)
    if len(names) == 1:
        return {names[0]: series}

    def piece(arrays: list[np.ndarray], i: int) -> list[np.ndarray]:
        return [probe.pieces(name, x)[i][1] for x in arrays]

    return {t: Series(piece(series.deltas, i), piece(series.grads, i), piece(series.weights, i),
                      piece(series.noise, i), series.eps) for i, t in enumerate(names)}


def _fits(probe: Probe, name: str, side: str, steps: range) -> dict[str, UpdateFit | None] | None:
    """The update fit of each torch parameter ``name`` maps to."""
    series = _side_series(probe, side, name, steps)
    if series is None:
        return None
    return {t: fit_update(s.deltas, s.grads, s.weights, s.noise, s.eps)
            for t, s in _pieces(probe, name, series).items()}


def _fit_steps(view: StepView, probe: Probe) -> range:
    """The steps a fit reads: from 0, the first FIT_STEPS or up to the diagnosed step, MAX_FIT_STEPS at most."""
    return range(0, min(probe.steps_run, max(view.step + 1, FIT_STEPS), MAX_FIT_STEPS))


def _never_moves(probe: Probe, name: str, side: str, steps: range) -> bool:
    series = _side_series(probe, side, name, steps)
    return series is not None and all(not np.any(d) for d in series.deltas)


def _unchanged(view: StepView, probe: Probe, name: str, side: str, steps: range) -> Finding:
    """One side's update never changes the weight: no rule to fit, the result does not reach the weights."""
    who = "NumPy" if side == "numpy" else "torch"
    function = "numpy.update" if side == "numpy" else (
        "torch.optimizer" if probe.scenario.torch.optimizer is not None else "torch.update")
    span = f"steps 0 to {steps[-1]}" if len(steps) > 1 else "step 0"
    cause = (f"the gradients of {name} agree but {who}'s update leaves {name} unchanged (Δw = 0 at every element in "
             f"{span}) while the other side's moves it: the update's result never reaches the weights — a name "
             "rebound (`w = w - lr * g` in a loop) where the array should change in place (`w -= lr * g`), an "
             "update applied to a copy, or a learning rate of 0.")
    evidence = (worst_line(view.comparisons[keys.after(name)]),
                f"grad {name} agrees: {worst_line(view.comparisons[keys.grad(name)])}")
    return Finding(rule="update-rule", cause=cause, evidence=evidence, confidence=0.9, step=view.step,
                   tensor=keys.after(name), side=side, function=function, tensors=(keys.after(name),))


def _compare_updates(view: StepView, probe: Probe, name: str) -> Finding | None:
    steps = _fit_steps(view, probe)
    still = [side for side in ("numpy", "torch") if _never_moves(probe, name, side, steps)]
    if len(still) == 1:
        return _unchanged(view, probe, name, still[0], steps)
    numpy_fits, torch_fits = _fits(probe, name, "numpy", steps), _fits(probe, name, "torch", steps)
    if numpy_fits is None or torch_fits is None:
        return None
    if any(f is None for f in [*numpy_fits.values(), *torch_fits.values()]):
        # Not SGD at one rate on some side: the wider families, with the SGD fits a side has.
        return _compare_rules(view, probe, name, steps, {"numpy": numpy_fits, "torch": torch_fits})
    differences, sides = [], set()
    for piece in numpy_fits:
        a, b = numpy_fits[piece], torch_fits.get(piece)
        text, side = _difference(piece, a, b, probe)
        if text:
            differences.append(text)
            sides.add(side)
    if not differences:
        return None
    side = sides.pop() if len(sides) == 1 else "both"
    evidence = [worst_line(view.comparisons[keys.after(name)]),
                f"grad {name} agrees: {worst_line(view.comparisons[keys.grad(name)])}"]
    evidence += [_fit_line(s, p, f) for s, fits in (("numpy", numpy_fits), ("torch", torch_fits))
                 for p, f in fits.items()]
    cause = (f"the gradients of {name} agree but the updates do not: the update rules differ — "
             + "; ".join(differences) + ".")
    function = {"numpy": "numpy.update", "torch": "torch.update"}.get(side)
    if side == "torch" and probe.scenario.torch.optimizer is not None:
        function = "torch.optimizer"
    return Finding(rule="update-rule", cause=cause, evidence=tuple(evidence), confidence=0.88, step=view.step,
                   tensor=keys.after(name), side=side, function=function, tensors=(keys.after(name),),
                   values=_fit_values(numpy_fits, torch_fits))


def _difference(piece: str, a: UpdateFit, b: UpdateFit, probe: Probe) -> tuple[str, str]:
    """How NumPy's update ``a`` of ``piece`` differs from torch's ``b`` in a sentence, and the side at fault."""
    hp = _hyper_values(probe)
    if not close(a.momentum, b.momentum, 1e-6) and abs(a.momentum - b.momentum) > 1e-9:
        return _momentum_difference(piece, a, b, hp)
    if a.nesterov != b.nesterov:
        return _nesterov_difference(piece, a, b, probe)
    if not close(a.dampening, b.dampening, 1e-6) and abs(a.dampening - b.dampening) > 1e-9:
        return _dampening_difference(piece, a, b, probe)
    if not close(a.lr, b.lr, 1e-6):
        return _nesterov_first_step(piece, a, b, probe) or _lr_difference(piece, a, b, hp)
    if not close(a.weight_decay, b.weight_decay, 1e-6) and abs(a.weight_decay - b.weight_decay) > 1e-12:
        return _decay_difference(piece, a, b)
    return "", ""


def _momentum_difference(piece: str, a: UpdateFit, b: UpdateFit, hp: dict[str, float]) -> tuple[str, str]:
    summed = [w for w, f in (("NumPy", a), ("torch", b)) if close(f.momentum, 1.0, 1e-6)]
    running = f" ({summed[0]}'s update uses a running sum of every gradient so far)" if summed else ""
    return (f"{piece}: momentum {a.nice(a.momentum)} on the NumPy side, {b.nice(b.momentum)} on torch's{running}",
            _off_hp(a.momentum, b.momentum, hp.get("momentum")))


def _nesterov_difference(piece: str, a: UpdateFit, b: UpdateFit, probe: Probe) -> tuple[str, str]:
    """One side's momentum is Nesterov's. The side at fault: the one that is not the scenario's ``nesterov``
    hyper-parameter; without one, torch's optimizer, where the flag is (nesterov=True, or its absence)."""
    which, other = ("NumPy", "torch") if a.nesterov else ("torch", "NumPy")
    m = a.momentum
    text = (f"{piece}: {which}'s momentum is Nesterov's (v = m·v + g, w −= lr·(g + m·v): its first step is "
            f"(1 + m) = {a.nice(1 + m)}× a classic one), {other}'s is classic (v = m·v + g, w −= lr·v)")
    flag = probe.hyper().get("nesterov")
    if isinstance(flag, bool):
        return text, "numpy" if a.nesterov != flag else "torch"
    if probe.scenario.torch.optimizer is not None:
        return text + f" — torch.optimizer {'sets' if b.nesterov else 'does not set'} nesterov=True", "torch"
    return text, which.lower()


def _dampening_difference(piece: str, a: UpdateFit, b: UpdateFit, probe: Probe) -> tuple[str, str]:
    """One side dampens its momentum torch's way; the side at fault is the one that differs from the scenario's
    ``dampening``, else the one that dampens (SGD's default is none)."""
    text = (f"{piece}: dampening {a.nice(a.dampening)} on the NumPy side, {b.nice(b.dampening)} on torch's (v = m·v + "
            "(1 − dampening)·g after a first step of v = g)")
    hp = probe.hyper().get("dampening")
    if isinstance(hp, (int, float)) and not isinstance(hp, bool):
        return text, _off_hp(a.dampening, b.dampening, float(hp))
    return text, "numpy" if abs(a.dampening) > abs(b.dampening) else "torch"


def _nesterov_first_step(piece: str, a: UpdateFit, b: UpdateFit, probe: Probe) -> tuple[str, str] | None:
    """A learning rate (1 + m)× the other side's where torch's SGD has momentum m: Nesterov's first step
    (the only one there is when one step has run: classic and Nesterov differ from the second)."""
    torch_side = probe.engine.live.torch
    group = param_group(torch_side.optimizer, torch_side.params.get(piece))
    m = group.get("momentum") or 0.0
    rho = a.lr / b.lr if b.lr else float("inf")
    if not m or not (close(rho, 1 / (1 + m), 1e-5) or close(rho, 1 + m, 1e-5)):
        return None
    bigger = "torch" if rho < 1 else "NumPy"
    flag = "sets nesterov=True" if group.get("nesterov") else "does not set nesterov=True"
    return (f"{piece}: {bigger}'s step is (1 + momentum) = {a.nice(1 + m)}× the other's: Nesterov momentum's first "
            f"step on {bigger}'s side, classic momentum's on the other — torch.optimizer {flag} (more steps tell "
            "the two rules apart)", "torch")


def _lr_difference(piece: str, a: UpdateFit, b: UpdateFit, hp: dict[str, float]) -> tuple[str, str]:
    rho, m = (a.lr / b.lr if b.lr else float("inf")), a.momentum
    if m > 0 and close(rho, 1 - m, 1e-5):
        return (f"{piece}: NumPy dampens the gradient by (1 − momentum) = {a.nice(1 - m)} (v = m·v − (1 − m)·g, an "
                f"exponential average), torch's SGD adds it whole (v = m·v + g, dampening 0)", "numpy")
    if m > 0 and close(rho, 1 / (1 - m), 1e-5):
        return f"{piece}: torch dampens the gradient by (1 − momentum) = {a.nice(1 - m)}, NumPy adds it whole", "torch"
    return (f"{piece}: learning rate {a.nice(a.lr)} on the NumPy side, {b.nice(b.lr)} on torch's (NumPy's step is "
            f"{factor_text(rho)}× torch's)", _off_hp(a.lr, b.lr, hp.get("lr")))


def _decay_difference(piece: str, a: UpdateFit, b: UpdateFit) -> tuple[str, str]:
    on = "NumPy" if abs(a.weight_decay) > abs(b.weight_decay) else "torch"
    bias = " — applied to the bias" if "bias" in piece and 0.0 in (a.weight_decay, b.weight_decay) else ""
    return (f"{piece}: weight decay {a.nice(a.weight_decay)} on the NumPy side, {b.nice(b.weight_decay)} on torch's"
            f"{bias} ({on} decays it)", on.lower())


def _off_hp(numpy_value: float, torch_value: float, hp_value: float | None) -> str:
    """The side whose value is not the scenario's hyper-parameter (both when neither or both are)."""
    if hp_value is None:
        return "both"
    numpy_ok, torch_ok = close(numpy_value, hp_value, 1e-6), close(torch_value, hp_value, 1e-6)
    if numpy_ok != torch_ok:
        return "torch" if numpy_ok else "numpy"
    return "both"


def _hyper_values(probe: Probe) -> dict[str, float]:
    hp = probe.hyper()
    out = {}
    for key, names in (("lr", ("lr", "learning_rate")), ("momentum", ("momentum",))):
        for n in names:
            if isinstance(hp.get(n), (int, float)):
                out[key] = float(hp[n])
    return out


def _fit_line(side: str, piece: str, fit: UpdateFit | None) -> str:
    if fit is None:
        return f"{side} {piece}: no SGD form fits its updates"
    g = f"g + {num(fit.weight_decay)}·w" if fit.weight_decay else "g"
    if fit.nesterov:
        form = f"v = {num(fit.momentum)}·v + ({g}), Δw = −{num(fit.lr)}·({g} + {num(fit.momentum)}·v) (Nesterov)"
    elif fit.dampening:
        form = (f"v = {num(fit.momentum)}·v + {num(1 - fit.dampening)}·({g}) (v = {g} at the first step), "
                f"Δw = −{num(fit.lr)}·v")
    else:
        form = f"Δw = −{num(fit.lr)}·({g})" + (f" + {num(fit.momentum)}·Δw_prev" if fit.momentum else "")
    return f"{side} {piece}: {form} (fitted over its own steps, residual {num(fit.residual)})"


def _fit_values(numpy_fits: dict, torch_fits: dict) -> dict[str, float]:
    out = {}
    for side, fits in (("numpy", numpy_fits), ("torch", torch_fits)):
        for piece, fit in fits.items():
            if fit is not None:
                out.update({f"{side} {piece} lr": fit.lr, f"{side} {piece} momentum": fit.momentum,
                            f"{side} {piece} weight_decay": fit.weight_decay,
                            f"{side} {piece} nesterov": float(fit.nesterov),
                            f"{side} {piece} dampening": fit.dampening})
    return out


# ---- rules beyond SGD at one rate: Adam, RMSprop, Adagrad, schedules ------------------------


def _rule_fits(probe: Probe, name: str, side: str, steps: range, settings: Settings) -> dict[str, RuleFit | None]:
    series = _side_series(probe, side, name, steps)
    fits = {t: first_fit(s.deltas, s.grads, s.weights, settings, s.noise)
            for t, s in _pieces(probe, name, series).items()}
    precision = max(1e-9, 100 * series.eps)  # as an SGD fit's
    return {t: f if f is None else replace(f, precision=precision) for t, f in fits.items()}


def _compare_rules(view: StepView, probe: Probe, name: str, steps: range,
                   sgd: dict[str, dict[str, UpdateFit | None]]) -> Finding | None:
    optimizer = probe.engine.live.torch.optimizer
    settings = settings_from(optimizer, probe.hyper())
    numpy_fits = _rule_fits(probe, name, "numpy", steps, settings)
    torch_fits = _rule_fits(probe, name, "torch", steps, settings)
    differences, sides, values = [], [], {}
    for piece, a in numpy_fits.items():
        b = torch_fits.get(piece)
        a_sgd, b_sgd = sgd["numpy"].get(piece), sgd["torch"].get(piece)
        if (a is None and a_sgd is not None) or (b is None and b_sgd is not None):
            text, side = _mixed_difference(piece, a or a_sgd, b or b_sgd, settings)
        else:
            text, side = _rule_difference(piece, a, b, probe, settings)
        if text:
            differences.append(text)
            sides.append(side)
        for who, fit in (("numpy", a), ("torch", b)):
            if fit is not None:
                values.update({f"{who} {piece} {k}": float(v) for k, v in fit.rule.constants.items()})
                values[f"{who} {piece} lr"] = float(fit.lrs[0])
    if not differences:
        return None
    side = sides[0] if len(set(sides)) == 1 else "both"
    side = None if side == "none" else side
    evidence = [worst_line(view.comparisons[keys.after(name)]),
                f"grad {name} agrees: {worst_line(view.comparisons[keys.grad(name)])}"]
    evidence += [_rule_line(w, p, f) if f is not None or sgd[w].get(p) is None else _fit_line(w, p, sgd[w][p])
                 for w, fits in (("numpy", numpy_fits), ("torch", torch_fits)) for p, f in fits.items()]
    first_step = _first_step_ratio(probe, name, steps)
    evidence += first_step
    cause = f"the gradients of {name} agree but the updates do not: " + "; ".join(differences) + "."
    if first_step and "Adam's first step" in first_step[0]:
        cause += f" {first_step[0][0].upper()}{first_step[0][1:]}."
    function = {"numpy": "numpy.update", "torch": "torch.optimizer" if optimizer is not None else "torch.update"
                }.get(side or "")
    return Finding(rule="update-rule", cause=cause, evidence=tuple(evidence), confidence=0.88 if side else 0.6,
                   step=view.step, tensor=keys.after(name), side=side, function=function,
                   tensors=(keys.after(name),), values=values)


def _rule_difference(piece: str, a: RuleFit | None, b: RuleFit | None, probe: Probe, settings: Settings
                     ) -> tuple[str, str]:
    known = "SGD (momentum, dampening, Nesterov, weight decay), Adam/AdamW, RMSprop or Adagrad"
    if a is None and b is None:
        return f"neither side's update of {piece} is {known}", "none"
    if a is None or b is None:
        which = "NumPy" if a is None else "torch"
        return f"{which}'s update of {piece} is none of {known} (clipping? a rule of its own?)", which.lower()
    if a.rule.name != b.rule.name or a.rule.constants != b.rule.constants:
        at_fault = _rule_at_fault(a, b, settings)
        return (f"{piece}: NumPy's update is {_rule_text(a)}, torch's {_rule_text(b)}", at_fault)
    shift = schedule_shift(a.lrs, b.lrs, probe.engine.steps_per_epoch)
    if shift is not None:
        epoch = probe.engine.steps_per_epoch
        span = (("an epoch" if abs(shift) == epoch and epoch > 1 else "a step") +
                (f" ({abs(shift)} steps)" if abs(shift) > 1 else ""))
        ahead = "NumPy's" if shift > 0 else "torch's"
        return (f"{piece}: both are {a.rule.name}, but {ahead} learning-rate schedule runs {span} early: NumPy's "
                f"rates {_rates(a)} against torch's {_rates(b)}", "numpy" if shift > 0 else "torch")
    ratio = a.lrs / b.lrs
    if np.allclose(ratio, ratio[0], rtol=1e-6) and not close(ratio[0], 1.0, 1e-6):
        hp = _hyper_values(probe).get("lr")
        return (f"{piece}: both are {a.rule.name}, with learning rate {nice(a.lrs[0], a.precision)} on the NumPy "
                f"side and {nice(b.lrs[0], b.precision)} on torch's (NumPy's steps are {factor_text(ratio[0])}× "
                "torch's)",
                _off_hp(a.lrs[0], b.lrs[0], hp) if hp is not None else "numpy")
    if not np.allclose(a.lrs, b.lrs, rtol=1e-6):
        return (f"{piece}: both are {a.rule.name}, with learning rates that differ from step to step: NumPy's "
                f"{_rates(a)}, torch's {_rates(b)}", "numpy")
    return "", ""


def _mixed_difference(piece: str, a: RuleFit | UpdateFit | None, b: RuleFit | UpdateFit | None,
                      settings: Settings) -> tuple[str, str]:
    """One side's update is SGD with momentum (the linear fits), the other's a rule of the wider families."""
    def text(fit: RuleFit | UpdateFit | None) -> str:
        if fit is None:
            return "none of the rules tried"
        return _sgd_text(fit) if isinstance(fit, UpdateFit) else _rule_text(fit)

    def family(fit: RuleFit | UpdateFit | None) -> str:
        return "SGD" if isinstance(fit, UpdateFit) else fit.rule.family if fit is not None else ""

    preferred = settings.preferred
    if preferred and family(b) == preferred != family(a):
        at_fault = "numpy"
    elif preferred and family(a) == preferred != family(b):
        at_fault = "torch"
    else:
        at_fault = "both"
    return f"{piece}: NumPy's update is {text(a)}, torch's {text(b)}", at_fault


def _sgd_text(fit: UpdateFit) -> str:
    parts = [f"lr {fit.nice(fit.lr)}"]
    if fit.momentum:
        parts.append(f"{'Nesterov ' if fit.nesterov else ''}momentum {fit.nice(fit.momentum)}")
    if fit.dampening:
        parts.append(f"dampening {fit.nice(fit.dampening)}")
    if fit.weight_decay:
        parts.append(f"weight decay {fit.nice(fit.weight_decay)}")
    return f"SGD ({', '.join(parts)})"


def _rule_at_fault(a: RuleFit, b: RuleFit, settings: Settings) -> str:
    """torch's optimizer is the reference when its rule is the one torch's optimizer class implements."""
    if settings.preferred and b.rule.family == settings.preferred and a.rule.family != settings.preferred:
        return "numpy"
    if settings.preferred and a.rule.family == settings.preferred and b.rule.family != settings.preferred:
        return "torch"
    return "numpy" if settings.preferred else "both"


def _rule_text(fit: RuleFit) -> str:
    consts = ", ".join(f"{GREEK.get(k, k)} {nice(v)}" for k, v in fit.rule.constants.items())
    rate = f"lr {nice(fit.lrs[0], fit.precision)}" if fit.constant_lr else f"lr per step {_rates(fit)}"
    return f"{fit.rule.name} ({', '.join(p for p in (rate, consts) if p)})"


GREEK = {"beta1": "β1", "beta2": "β2", "eps": "ε", "alpha": "α", "weight_decay": "weight decay"}


def _rates(fit: RuleFit) -> str:
    shown = ", ".join(nice(float(x), fit.precision) for x in fit.lrs[:6])
    return f"[{shown}{', …' if len(fit.lrs) > 6 else ''}]"


def _rule_line(side: str, piece: str, fit: RuleFit | None) -> str:
    if fit is None:
        return f"{side} {piece}: no rule fits its updates"
    return (f"{side} {piece}: Δw = −lr·d with d from {_rule_text(fit)}, fitted step by step over its own run "
            f"(residual {num(fit.residual)} of the update's scale)")


def _first_step_ratio(probe: Probe, name: str, steps: range) -> list[str]:
    """At step 0 both start from the same state: NumPy's update / torch's, when it is one number."""
    if not len(steps):
        return []
    record = probe.record(steps[0])
    d = [np.asarray(getattr(record, s)[keys.after(name)], dtype=np.float64) -
         np.asarray(getattr(record, s)[keys.before(name)], dtype=np.float64) for s in ("numpy", "torch")]
    r = constant_ratio(d[0], d[1], 1e-3)  # to 1e-3: ε shifts the smallest elements a little
    if r is None or close(r, 1.0, 1e-3):
        return []
    return [f"at step {steps[0]} NumPy's update is {num(float(f'{r:.5g}'))}× torch's for every element of {name}"
            + (" = (1 − β1)/√(1 − β2), Adam's first step without bias correction" if _adam_first(r) else "")]


def _adam_first(r: float) -> bool:
    return any(close(r, (1 - b1) / np.sqrt(1 - b2), 1e-3) for b1, b2 in ((0.9, 0.999), (0.9, 0.99), (0.5, 0.999)))


# ---- an L2 penalty in one side's gradient --------------------------------------------------


def penalty_findings(view: StepView, probe: Probe | None, found: list[Finding]) -> list[Finding]:
    ratios = {k for f in found if f.rule == "ratio" for k in f.tensors}
    out = []
    for name in view.weights:
        grad, before = keys.grad(name), keys.before(name)
        pair = view.pair(grad)
        w = view.torch.get(before)
        if grad not in view.diverged or grad in ratios or pair is None or w is None or np.size(w) != pair[0].size:
            continue
        finding = _penalty(view, probe, name, pair, np.asarray(w).reshape(pair[0].shape))
        if finding is not None:
            out.append(finding)
    return out


def _penalty(view: StepView, probe: Probe | None, name: str, pair: tuple[np.ndarray, np.ndarray],
             w: np.ndarray) -> Finding | None:
    g_np, g_t = (np.asarray(x, dtype=np.float64) for x in pair)
    rounding = max(64 * lower_eps(*pair), view.relative_noise())
    noise = rounding * np.maximum(np.abs(g_np), np.abs(g_t)) + 1e-300
    k = fit_coefficient(g_np - g_t, w, noise, 1e-3)
    named = _named_hyper(view, abs(k)) if k is not None else None
    if k is None or (fit_coefficient(g_np - g_t, w, noise, 1e-3, support=2) is None and not named):
        return None  # one number is proportional to anything: only a known penalty makes it a reading
    if probe is not None and _accumulated(view, probe, name, g_np - g_t, noise):
        return None  # the control: from a zero start, an unzeroed gradient is k·w with k = 1/lr
    base = named[0].removeprefix("2·") if named else ""
    amount = f"{named[0]}·{name} ({base} = {num(named[1])})" if named else f"{nice(abs(k))}·{name}"
    where = _penalty_elsewhere(view, probe, name, k, w)
    if where:
        return _split_penalty(view, name, k, amount, where)  # the control: the same training, split differently
    side, function, blame = _penalty_blame(view, probe, name, k)
    pieces = _piece_coefficients(probe, name, g_np - g_t, w, noise) if probe is not None else {}
    bigger = "NumPy" if k > 0 else "torch"
    cause = f"the {bigger} gradient of {name} is the other side's plus {amount}{_bias_clause(name, pieces, k)}: "
    cause += blame or (f"an L2 penalty's gradient added on the {bigger} side only. Apply the same penalty on both "
                       "sides (and decide whether the bias is penalised).")
    evidence = [worst_line(view.comparisons[keys.grad(name)]),
                f"numpy − torch = k·{name} with k = {num(k)} for every element (within the gradients' rounding)"]
    evidence += [f"{p}: k = {num(v) if v is not None else 'no single k'}" for p, v in pieces.items()]
    for who in ("numpy", "torch"):
        check = probe.gradcheck_of(view.step, who, name) if probe is not None else None
        evidence += [gradcheck_line(check)] if check is not None else []
    if probe is not None and view.step > 0:
        evidence.append("the control: the difference is not the previous step's gradient (no accumulation)")
    return Finding(rule="penalty", cause=cause, evidence=tuple(evidence), confidence=0.9, step=view.step,
                   tensor=keys.grad(name), side=side, function=function,
                   tensors=(keys.grad(name), keys.after(name)),
                   values={"k": k, **({base: named[1]} if named else {})})


def _updates_agree(view: StepView, name: str) -> bool:
    """Both sides' updates of ``name`` agree (the update pair where recorded, else the new weights)."""
    measured = [k for k in (keys.update(name), keys.after(name)) if k in view.comparisons]
    return bool(measured) and all(view.agrees(k) for k in measured)


def _penalty_elsewhere(view: StepView, probe: Probe | None, name: str, k: float, w: np.ndarray) -> str:
    """Where the side without the L2 term k·w in its gradient adds it instead, when its update does and the
    updates agree: torch's optimizer's weight decay, or a decay term in NumPy's fitted update. "" otherwise (the
    updates may agree only because k·w is too small to show in them yet)."""
    if probe is None or not _updates_agree(view, name):
        return ""
    if k > 0:
        decay = coupled_decay(probe.engine, name, w)
        if np.all(np.isclose(decay, k, rtol=1e-3, atol=0)):
            return (f"torch's optimizer adds it as weight decay (weight_decay = {nice(float(np.max(decay)))} in "
                    "torch.optimizer), after .grad is read")
        return ""
    fits = _fits(probe, name, "numpy", _fit_steps(view, probe))
    if fits and all(f is not None and close(f.weight_decay, -k, 1e-3) for f in fits.values()):
        fit = next(iter(fits.values()))
        return f"NumPy's update adds it (numpy.update: w −= lr·(g + {fit.nice(fit.weight_decay)}·w))"
    return ""


def _split_penalty(view: StepView, name: str, k: float, amount: str, where: str) -> Finding:
    """The gradients differ by an L2 term k·w that the other side adds in its update: not a bug."""
    bigger, other = ("NumPy", "torch") if k > 0 else ("torch", "NumPy")
    cause = (f"the {bigger} gradient of {name} is the other side's plus {amount}, but the updates agree: {bigger}'s "
             f"gradient holds the L2 penalty's gradient, {other}'s does not because {where}. The same training, "
             f"split differently — not a bug. To compare the gradients like with like, add the penalty where the "
             f"other side does.")
    if "loss" in view.diverged:
        cause += f" The losses differ for the same reason: {bigger}'s holds the penalty, {other}'s does not."
    evidence = [worst_line(view.comparisons[keys.grad(name)]),
                f"numpy − torch = k·{name} with k = {num(k)} for every element (within the gradients' rounding)"]
    evidence += [f"{key} agrees: {worst_line(view.comparisons[key])}" for key in (keys.update(name), keys.after(name))
                 if key in view.comparisons]
    return Finding(rule="penalty", cause=cause, evidence=tuple(evidence), confidence=0.9, step=view.step,
                   tensor=keys.grad(name), side=None, function=None, tensors=(keys.grad(name),),
                   values={"k": k})


def _penalty_blame(view: StepView, probe: Probe | None, name: str, k: float) -> tuple[str, str, str]:
    """(side, function, sentence): finite differences decide when one side's gradient is not its loss's."""
    by_sign = "numpy" if k > 0 else "torch"
    default = (by_sign, "numpy.backward" if by_sign == "numpy" else "torch.loss", "")
    if probe is None:
        return default
    mine, theirs = probe.gradcheck_of(view.step, "numpy", name), probe.gradcheck_of(view.step, "torch", name)
    if mine is not None and theirs is not None and mine.differs and theirs.matches:
        return ("numpy", "numpy.backward", "finite differences say NumPy's gradient is the wrong one — it is not the "
                "derivative of numpy.loss, and torch's is torch.loss's: the L2 term in numpy.backward does not match "
                f"the penalty in numpy.loss (off by {nice(k)}·{name}; the derivative of λ·Σw² is 2λw).")
    if mine is not None and theirs is not None and theirs.differs and mine.matches and theirs.fresh_matches is False:
        return ("torch", "torch.backward", "finite differences say torch's gradient is not torch.loss's.")
    if mine is not None and theirs is not None and mine.matches and theirs.matches and \
            _loss_has_penalty(view, probe, name, k):
        return (by_sign, f"{by_sign}.loss", f"an L2 penalty in {by_sign}.loss and its gradient, on the {by_sign} side "
                "only: each gradient is its own loss's (finite differences). Apply the same penalty on both sides "
                "(and decide whether the bias is penalised).")
    return default


def _loss_has_penalty(view: StepView, probe: Probe, name: str, k: float) -> bool:
    """Do the losses (float64 re-runs from the same weights) differ by k/2·Σw², the penalty whose gradient is k·w?"""
    try:
        mine, theirs = probe.numpy_float64(view.step), probe.torch_fresh(view.step)
    except Exception:  # the re-runs are optional evidence
        return False
    if "loss" not in mine or "loss" not in theirs:
        return False
    record = probe.record(view.step)
    w = np.asarray(record.torch.get(keys.before(name), record.numpy[keys.before(name)]), dtype=np.float64)
    expected = k / 2 * float(np.sum(w * w))
    difference = float(np.sum(np.asarray(mine["loss"], dtype=np.float64)) - np.sum(np.asarray(theirs["loss"])))
    return expected != 0 and close(difference, expected, 1e-6)


def _accumulated(view: StepView, probe: Probe, name: str, difference: np.ndarray, noise: np.ndarray) -> bool:
    """Is numpy − torch the previous step's torch gradient, negated (torch's never zeroed)?"""
    if view.step == 0:
        return False
    previous = probe.record(view.step - 1).torch.get(keys.grad(name))
    if previous is None or np.size(previous) != difference.size:
        return False
    p = np.asarray(previous, dtype=np.float64).reshape(difference.shape)
    scale = float(np.max(np.abs(p), initial=0.0))
    return scale > 0 and bool(np.all(np.abs(difference + p) <= 10 * noise + 1e-6 * scale))


def _bias_clause(name: str, pieces: dict[str, float | None], k: float) -> str:
    """", to all of W including its bias (...)" when the bias piece carries the same penalty."""
    bias = [p for p in pieces if "bias" in p]
    if bias and all(pieces[p] is not None and close(pieces[p], k, 1e-2) for p in bias):
        return f", to all of {name} including its bias (torch's {join_names(bias)})"
    return ""


def _piece_coefficients(probe: Probe, name: str, d: np.ndarray, w: np.ndarray, noise: np.ndarray) -> dict:
    if len(probe.torch_names(name)) < 2:
        return {}
    d_parts, w_parts, n_parts = probe.pieces(name, d), probe.pieces(name, w), probe.pieces(name, noise)
    return {p: fit_coefficient(dp, wp, npart, 1e-3)
            for (p, dp), (_, wp), (_, npart) in zip(d_parts, w_parts, n_parts, strict=True)}


PENALTY_NAMES = ("l2", "lam", "lambda", "penalty", "decay", "reg", "wd", "alpha", "beta", "ridge")


def _named_hyper(view: StepView, value: float) -> tuple[str, float] | None:
    """The penalty-like hyper-parameter whose value ``value`` is (to 0.1%), or twice it (the derivative of
    λ·Σw²): ("l2_penalty", 0.0001), ("2·alpha", 0.1). The control: a batch size or a learning rate that
    happens to equal it is no reading."""
    for n, v in view.hyper.items():
        if not any(word in n.lower() for word in PENALTY_NAMES):
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v != 0:
            if close(float(v), value, 1e-3):
                return n, float(v)
            if close(2 * float(v), value, 1e-3):
                return f"2·{n}", float(v)
    return None
