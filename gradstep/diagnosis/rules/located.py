"""The line at fault (``line``): the localiser's answer, as a finding of its own or as evidence for a rule's.

The rules name causes they know; :mod:`gradstep.diagnosis.localise` finds the
statement where the NumPy code first computes something torch does not, with
no catalogue. Its answer is merged with theirs:

* a rule that names a cause on the NumPy side for the same tensors keeps its
  place and gains the line (``file``, ``line`` and the evidence);
* a rule that only says "something else" (``gradcheck``), or a factor with no
  reading, gives way to a line the localiser fixed with an edit, its evidence
  kept;
* a finding that blames torch's autograd (``torch.backward``) for the same
  tensors is demoted when the localiser confirmed a NumPy line;
* otherwise the line is a finding of its own, ranked below a finding that
  explains the same tensors by a cause on the other side (torch's extra bias:
  torch's values then fix any NumPy line downstream of it).
"""

from __future__ import annotations

import ast
import dataclasses

import numpy as np

from gradstep import keys
from gradstep.diagnosis.budget import Budget
from gradstep.diagnosis.findings import Finding, num
from gradstep.diagnosis.localise import Culprit, Localiser
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import join_names, worst_line

GENERIC = {"gradcheck"}


def locate(view: StepView, probe: Probe | None, found: list[Finding], budget: Budget) -> list[Finding]:
    """``found`` with the localiser's line merged in (see the module docstring)."""
    if probe is None or not view.diverged_in("forward", "loss", "grad"):
        return found
    if budget.expired(reserve=1.0):
        budget.skip("the line localiser: the time budget was spent before it")
        return found
    culprit = Localiser(probe, view, budget).find()
    if culprit is None:
        return found
    return merge(found, kink_finding(view, culprit) or line_finding(view, culprit))


def merge(found: list[Finding], line: Finding) -> list[Finding]:
    strength = line.values.get("score", 0)
    covering = [f for f in found if f.step == line.step and set(f.tensors) & set(line.tensors)]
    specific = [f for f in covering if f.side == "numpy" and not _generic(f)]
    out = []
    absorbed: list[str] = []
    for f in found:
        if f in specific:
            out.append(dataclasses.replace(f, evidence=(*f.evidence, *line.evidence[1:]), file=line.file,
                                           line=line.line))
        elif f in covering and strength >= 3 and f.side in ("numpy", "both", None) and _generic(f):
            absorbed += list(f.evidence)
        elif f in covering and strength >= 2 and f.side == "torch" and f.function == "torch.backward":
            out.append(dataclasses.replace(f, confidence=min(f.confidence, 0.45)))
        else:
            out.append(f)
    if not specific:
        # Another side's cause for the same tensors (torch's extra bias, a different loss) comes first:
        # torch's value fixes any NumPy line downstream of it.
        elsewhere = [f for f in out if f in covering and f.side != "numpy" and not _generic(f)
                     and f.function != "torch.backward" and f.confidence >= 0.5]
        if elsewhere and strength < 3:
            return out  # nothing to add: no edit of the NumPy line, torch's cause explains it
        confidence = min(line.confidence, 0.5) if elsewhere else line.confidence
        out.append(dataclasses.replace(line, evidence=(*line.evidence, *absorbed), confidence=confidence))
    return out


def _generic(f: Finding) -> bool:
    """A finding that says the sides differ without naming a cause: no side or function, a factor no reading
    explains, a gradient that is "something else"."""
    return f.rule in GENERIC or f.side is None or f.function is None or (
        f.rule == "ratio" and not f.values.get("reading"))


# ---- a kink: the sides part only where an input sits exactly on it ----------------------------


def kink_finding(view: StepView, c: Culprit) -> Finding | None:
    """The line's value and torch's differ only where one of its inputs is exactly at a kink (0, or a constant
    the line compares with): the derivative there is a convention, and the two sides chose differently."""
    if c.right is None or not isinstance(c.value, np.ndarray) or c.value.shape != c.right.shape:
        return None
    mine, theirs = np.asarray(c.value, dtype=np.float64), np.asarray(c.right, dtype=np.float64)
    scale = max(float(np.max(np.abs(theirs), initial=0.0)), 1e-300)
    differ = np.abs(mine - theirs) > 1e-9 * scale
    if not differ.any():
        return None
    for i in c.inputs:
        if not isinstance(i.value, np.ndarray) or i.value.shape != mine.shape or i.value.dtype.kind != "f":
            continue
        for point in _kink_points(c):
            at = i.value == point
            if at.any() and not (differ & ~at).any():
                return _kink(view, c, i.text, point, int(differ.sum()), int(at.sum()), mine, theirs, differ)
    return None


def _kink_points(c: Culprit) -> list[float]:
    points = [0.0]
    if c.stmt is not None:
        for node in ast.walk(c.stmt):
            if isinstance(node, ast.Compare):
                points += [float(x.value) for x in node.comparators if isinstance(x, ast.Constant)
                           and isinstance(x.value, (int, float)) and not isinstance(x.value, bool)]
    return list(dict.fromkeys(points))


def _kink(view: StepView, c: Culprit, name: str, point: float, n_differ: int, n_at: int, mine: np.ndarray,
          theirs: np.ndarray, differ: np.ndarray) -> Finding:
    first = tuple(int(i) for i in np.argwhere(differ)[0])
    convention = _convention(c, point)
    cause = (f"{c.role}, {c.location} `{c.text}`: the sides differ only where {name} is exactly {num(point)} "
             f"({n_differ} elements), the kink, where a derivative is a convention — {convention}")
    if c.fix is not None:
        cause += f" With {c.fix.text} it matches torch to {num(c.fix.error)}."
    evidence = [worst_line(view.comparisons[c.targets[0]])] if c.targets[0] in view.comparisons else []
    evidence += [f"{c.what}{list(first)}: NumPy {num(mine[first])}, torch ({c.torch_value}) {num(theirs[first])}, "
                 f"where {name} is {num(point)}",
                 f"{n_at} elements of {name} are exactly {num(point)}; every element that differs is one of them, "
                 "in float64 re-runs of both sides from the same weights (not rounding)",
                 "finite differences have no verdict there: the one-sided differences disagree at a kink"]
    return Finding(rule="kink", cause=cause, evidence=tuple(evidence), confidence=0.93, step=view.step,
                   tensor=c.targets[0], side="numpy", function=c.role, tensors=tuple(c.targets),
                   values={"line": float(c.lineno), "point": point, "elements": float(n_differ)},
                   file=c.filename, line=c.lineno)


def _convention(c: Culprit, point: float) -> str:
    ops = {type(op) for node in ast.walk(c.stmt) if isinstance(node, ast.Compare) for op in node.ops} \
        if c.stmt is not None else set()
    if ast.GtE in ops or ast.LtE in ops:
        return (f"NumPy's `>=`/`<=` counts {num(point)} in (a ReLU's derivative 1 at 0), torch's ReLU gives 0 there "
                "(`> 0`). Use `>` to match torch, or accept the difference as a convention.")
    if ast.Gt in ops or ast.Lt in ops:
        return (f"NumPy's `>`/`<` leaves {num(point)} out, torch counts it in there (`>=`). Use `>=` to match "
                "torch, or accept the difference as a convention.")
    return "NumPy's line and torch's backward take different one-sided derivatives there."


def line_finding(view: StepView, c: Culprit) -> Finding:
    agreeing = [i.text for i in c.inputs if i.agrees]
    numbers = [f"{i.text} = {num(i.value)}" for i in c.inputs if np.ndim(i.value) == 0]
    cause = f"{c.role}, {c.location} `{c.text}`"
    if c.in_place is not None:
        cause += (f": changes in place an array that {c.in_place.location} `{c.in_place.text}` gave a second name "
                  f"without copying it, so {join_names(c.targets)} changes with it")
    elif agreeing:
        cause += f": {join_names(agreeing)} {'agrees' if len(agreeing) == 1 else 'agree'} with torch; {c.what} does not"
    else:
        cause += f": {c.what} matches no torch value"
    if c.function and c.function not in c.role:
        cause += f" (in {c.function}())"
    if c.fix is not None:
        cause += f". With {c.fix.text} it matches torch to {num(c.fix.error)}."
    elif c.torch_value is not None:
        cause += (f". Torch's {c.torch_value} in its place makes {join_names(c.targets)} agree: this line computes "
                  "something else, and no small edit of it does what torch does.")
    else:
        cause += ". No edit of it was found that makes the sides agree: it is the first line, in the order the code "
        cause += "ran, whose inputs agree with torch and whose result does not."
    evidence = [worst_line(view.comparisons[c.targets[0]])] if c.targets[0] in view.comparisons else []
    evidence.append(f"both sides re-run in float64 from torch's weights at step {view.step}: {join_names(c.targets)} "
                    f"differ; {c.location} is where the NumPy code first computes a value torch does not")
    for i in c.inputs:
        if i.agrees:
            evidence.append(f"{i.text}: agrees with torch ({i.torch_name})")
        elif np.ndim(i.value) > 0:
            evidence.append(f"{i.text}: matches no torch value (torch may never form it)")
    evidence += numbers
    if c.torch_value is not None:
        evidence.append(f"torch's {c.torch_value} in the place of {c.what}: {join_names(c.targets)} agree")
    if c.fix is not None:
        evidence.append(f"{c.location} as `{c.fix.expression}`: {join_names(c.targets)} agree with torch, greatest "
                        f"difference {num(c.fix.error)} of their scale (the NumPy step re-run with it)")
    confidence = {3: 0.95, 2: 0.9, 1: 0.85}.get(c.score, 0.6)
    after = [keys.after(keys.base_name(t)) for t in c.targets if view.phase(t) == "grad"
             and keys.after(keys.base_name(t)) in view.diverged]
    values = {"line": float(c.lineno), "score": float(c.score)}
    if c.fix is not None:
        values["error"] = c.fix.error
    return Finding(rule="line", cause=cause, evidence=tuple(evidence), confidence=confidence, step=view.step,
                   tensor=c.targets[0], side="numpy", function=c.role, tensors=tuple([*c.targets, *after]),
                   values=values, file=c.filename, line=c.lineno)
