"""The line at fault, without a rule: where the NumPy code first computes something torch does not.

At the diagnosed step both sides re-run in float64 from the torch side's
weights. The NumPy functions run under :class:`~gradstep.diagnosis.lines.LineRecorder`
(every value each line binds), torch under a dispatch mode that keeps every
intermediate of the forward and backward passes
(:mod:`gradstep.diagnosis.torchvalues`). The outputs that differ in the earliest
phase are the targets. From each, the search walks back through values that
match no torch value to the statements that made them: the *suspects*. Each is
then tried:

* torch's own value in its place (every torch intermediate of its size): when
  the re-run's targets then agree with torch, the line is where the NumPy code
  first parts from torch, and torch's value is what it should have computed;
* the small edits of :mod:`gradstep.diagnosis.variants` (``a1`` for ``z1``,
  ``W.T`` for ``W``, another axis or divisor, ``>`` for ``>=``...), and a constant
  factor fitted on the line or on one of its terms: an edit that makes the
  targets agree is the fix, checked by re-running the whole NumPy step with it.

The suspect that an edit fixes wins, then one that torch's value fixes, then
one only a fitted factor fixes; ties go to the earliest line executed. With
nothing confirmed the earliest suspect whose inputs all agree with torch is
reported, at lower confidence.
"""

from __future__ import annotations

import ast
import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from gradstep import keys
from gradstep.diagnosis.budget import Budget
from gradstep.diagnosis.lines import Argument, LineRecorder, Product, Run, evaluate, leaves
from gradstep.diagnosis.numeric import agreement_tolerance, constant_ratio
from gradstep.diagnosis.probe import Probe
from gradstep.diagnosis.replica import TorchReplica, batch_float64, hyper_for, loss_dict, rng_preserved
from gradstep.diagnosis.rewrite import INJECTED, function_of, installed, rewritten
from gradstep.diagnosis.torchvalues import Recording, TorchValue, TorchValues, equal
from gradstep.diagnosis.variants import FITTED, STRUCTURAL, Edit, code, edits, terms
from gradstep.diagnosis.view import StepView
from gradstep.diagnosis.words import factor_text
from gradstep.scenario import takes

TIGHT = 1e-8  # two float64 computations of the same math agree to this fraction of a tensor's scale
ROLES = ("forward", "loss", "backward")
MAX_SUSPECTS = 12
MAX_INJECTIONS = 24


@dataclass(frozen=True)
class Input:
    text: str
    value: Any
    origin: Product | Argument | None
    agrees: bool
    torch_name: str = ""


@dataclass(frozen=True)
class LineFix:
    kind: str
    text: str
    expression: str  # the line's expression with the fix
    error: float  # greatest difference of the targets to torch after it, relative to their scale
    strength: int


@dataclass
class Culprit:
    """The line, what it reads and computes, and what fixes it."""

    role: str  # "numpy.backward"
    filename: str
    lineno: int
    text: str
    label: str  # what the line computes: "dz1", "return['W']"
    inputs: list[Input]
    targets: list[str]  # the tensor keys it explains
    torch_value: str | None = None  # the torch intermediate that, in its place, makes the targets agree
    fix: LineFix | None = None
    in_place: Run | None = None  # the line that made the array it changes in place without a copy
    function: str = ""  # the Python function holding the line (a helper's name, possibly)
    score: int = 0
    value: Any = None  # what the line computed (float64 re-run)
    right: np.ndarray | None = None  # torch's value that, in its place, makes the targets agree
    stmt: ast.stmt | None = None

    @property
    def location(self) -> str:
        return f"{Path(self.filename).name}:{self.lineno}"

    @property
    def what(self) -> str:
        if self.label.startswith("return["):
            return f"the returned {self.label[len('return['):-1]}"
        return "the returned value" if self.label == "return" else self.label


@dataclass
class _Suspect:
    product: Product
    targets: set[str] = field(default_factory=set)


class Localiser:
    """One localisation at one step (see the module's docstring)."""

    def __init__(self, probe: Probe, view: StepView, budget: Budget | None = None):
        self.probe, self.view = probe, view
        self.engine = probe.engine
        self.budget = budget or Budget()
        self.fns = self.engine.scenario.numpy
        self.roles: dict[str, Callable[..., Any]] = {r: getattr(self.fns, r) for r in ROLES}
        self._match_cache: dict[int, tuple[TorchValue, str] | None] = {}

    # ---- the two sides, recorded ---------------------------------------------------------
    def _prepare(self) -> bool:
        record = self.probe.record(self.view.step)
        names = self.engine.live.numpy_weight_names(record)
        self.start = {}
        for n in names:
            mine = np.asarray(record.numpy[keys.before(n)])
            theirs = record.torch.get(keys.before(n), mine)
            self.start[n] = np.array(theirs, dtype=np.float64 if mine.dtype.kind == "f" else mine.dtype)
        self.hp = hyper_for(self.engine, step=self.view.step)  # hp.step, epoch, index of the step, as torch's
        self.batch = batch_float64(self.engine.live.data.batch(record.epoch, record.index))
        self.torch_values = TorchValues()
        replica = TorchReplica(self.engine, record)
        with Recording(self.torch_values):
            self.torch_out = replica.step_outputs()
        self.torch_values.add_all((f"input {n}", a) for n, a in self.batch.items())
        self.torch_values.add_all((f"weight {n}", replica.weight(n)) for n in replica.weight_names)
        self.torch_values.add_all((f"torch {k}", v) for k, v in self.torch_out.items())
        self.recorder = LineRecorder()
        with rng_preserved():
            self.outputs = self._numpy_outputs(self.roles, self.recorder)
        return self.outputs is not None

    def _numpy_outputs(self, roles: Mapping[str, Callable[..., Any]], recorder: LineRecorder | None = None
                       ) -> dict[str, Any] | None:
        """forward, loss and backward from the start weights; ``{key: value}`` as the engine names them."""
        def call(role: str, fn: Callable[..., Any], args: dict[str, Any]) -> Any:
            if recorder is not None:
                return recorder.call(f"numpy.{role}", fn, args)
            return fn(*args.values())

        weights = {n: w.copy() for n, w in self.start.items()}
        batch = dict(self.batch)
        try:
            with np.errstate(all="ignore"):
                acts = dict(call("forward", roles["forward"], {"weights": weights, "batch": batch, "hp": self.hp}))
                loss_args = {"acts": acts, "batch": batch, "hp": self.hp}
                if takes(roles["loss"], 4):  # a loss with an L2 term takes the weights too (NumpySide.call_loss)
                    loss_args["weights"] = weights
                losses = loss_dict(call("loss", roles["loss"], loss_args))
                grads = call("backward", roles["backward"],
                             {"weights": weights, "acts": acts, "batch": batch, "hp": self.hp})
        except Exception:  # the scenario's code on a variant: a variant that breaks it is no fix
            return None
        return {**acts, **losses, **{keys.grad(n): g for n, g in dict(grads).items()}}

    # ---- comparing -------------------------------------------------------------------------
    def _tolerance(self, value: Any) -> float:
        a = np.asarray(value)
        return TIGHT if a.dtype == np.float64 or a.dtype.kind != "f" else 10 * agreement_tolerance(a)

    def _agrees(self, value: Any, theirs: np.ndarray) -> bool:
        a = np.asarray(value)
        if a.size != np.size(theirs) or a.dtype.kind not in "biuf":
            return False
        a = a.astype(np.float64)
        b = np.asarray(theirs, dtype=np.float64).reshape(a.shape)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            return bool(np.array_equal(a, b, equal_nan=True))
        return equal(a, b, float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)),
                     self._tolerance(value))

    def _error(self, outputs: Mapping[str, Any], targets: set[str]) -> float:
        worst = 0.0
        for key in targets:
            a = np.asarray(outputs[key], dtype=np.float64)
            b = np.asarray(self.torch_out[key], dtype=np.float64).reshape(a.shape)
            scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
            worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)) / scale)
        return worst

    def _match(self, value: Any) -> tuple[TorchValue, str] | None:
        key = id(value)
        if key not in self._match_cache:
            self._match_cache[key] = self.torch_values.match(value, self._tolerance(value))
        return self._match_cache[key]

    def _differing(self) -> list[str]:
        return [k for k, v in self.outputs.items() if k in self.torch_out and not self._agrees(v, self.torch_out[k])]

    # ---- the search ------------------------------------------------------------------------
    def find(self) -> Culprit | None:
        if not self._prepare():
            return None
        differing = [k for k in self._differing() if k in self.view.diverged] or []
        if not differing:
            return None
        first = min(keys.PHASES.index(self.engine.phase_of(k)) for k in differing)
        targets = [k for k in differing if keys.PHASES.index(self.engine.phase_of(k)) == first]
        suspects = self._suspects(targets)
        if not suspects:
            return None
        culprits = []
        for suspect in suspects[:MAX_SUSPECTS]:
            if self.budget.expired(reserve=0.5):
                self.budget.skip("the line search stopped early: the time budget ran out")
                break
            culprits.append(self._try(suspect))
            if culprits[-1].score >= 3:
                break
        if not culprits:
            return None
        best = max(culprits, key=lambda c: c.score)
        if best.score == 0:
            agreeing = [c for c in culprits if all(i.agrees for i in c.inputs if _is_array(i.value))]
            best = (agreeing or culprits)[0]
        return best

    def _suspects(self, targets: list[str]) -> list[_Suspect]:
        """Statements on a path of values matching no torch value, from the targets back, in execution order."""
        found: dict[int, _Suspect] = {}
        visited: set[tuple[int, str]] = set()
        stack: list[tuple[Product, str]] = []
        for key in targets:
            origin = self.recorder.origin(self.outputs[key])
            if isinstance(origin, Product):
                stack.append((origin, key))
        while stack:
            product, key = stack.pop()
            if (id(product), key) in visited:
                continue
            visited.add((id(product), key))
            found.setdefault(id(product), _Suspect(product)).targets.add(key)
            for i in self._inputs(product):
                if _is_array(i.value) and not i.agrees and isinstance(i.origin, Product):
                    stack.append((i.origin, key))
        return sorted(found.values(), key=lambda s: (s.product.run.index, s.product.label))

    def _inputs(self, product: Product) -> list[Input]:
        expr = product.expr
        if expr is None:
            return []
        out = []
        for leaf in leaves(expr):
            try:
                value = evaluate(leaf, product.run)
            except Exception:
                continue
            if not (_is_array(value) or isinstance(value, (int, float, np.integer, np.floating))) or isinstance(
                    value, bool):
                continue
            origin = self.recorder.origin(value) if _is_array(value) or isinstance(value, float) else None
            agrees, torch_name = False, ""
            if _is_array(value):
                if isinstance(origin, Argument) and origin.path.startswith(("weights[", "batch[")):
                    agrees, torch_name = True, "the same " + origin.path.split("[")[0]
                else:
                    hit = self._match(value)
                    agrees, torch_name = hit is not None, (hit[0].name + hit[1]) if hit else ""
            out.append(Input(code(leaf), value, origin, agrees, torch_name))
        return out

    # ---- trying one suspect ----------------------------------------------------------------
    def _try(self, suspect: _Suspect) -> Culprit:
        product = suspect.product
        run = product.run
        ordered = [t for t in self.view.order if t in suspect.targets]
        ordered += sorted(t for t in suspect.targets if t not in ordered)
        culprit = Culprit(run.role, run.filename, run.lineno, run.text, product.label, self._inputs(product),
                          ordered, function=run.code.co_name)
        targets = set(suspect.targets)
        if product.in_place:
            culprit.in_place = self._aliasing_run(product)
        culprit.value, culprit.stmt = product.value, run.stmt
        right = self._torch_value_here(product, targets)
        if right is not None:
            culprit.torch_value, culprit.score, culprit.right = right[0].name, 2, right[1]
        fix = self._structural_fix(product, targets, right[1] if right else None)
        if fix is None:
            fix = self._factor_fix(product, targets, right[1] if right else None)
        if fix is not None:
            culprit.fix = fix
            culprit.score = max(culprit.score, 3 if fix.strength == STRUCTURAL else 1)
        return culprit

    def _rerun(self, product: Product, new: ast.expr, value: Any = None, run: Run | None = None,
               old: ast.AST | None = None) -> dict[str, Any] | None:
        """The NumPy step again with ``old`` (default: the product's expression) replaced by ``new``."""
        run = run or product.run
        old = old if old is not None else product.expr
        fn = function_of(run, self.roles)
        if fn is None or old is None:
            return None
        patched = rewritten(fn, old, new, value)
        if patched is None:
            return None
        roles = dict(self.roles)
        role = next((r for r, f in self.roles.items() if f is fn), None)
        with rng_preserved():
            if role is not None:
                roles[role] = patched
                return self._numpy_outputs(roles)
            with installed(run, fn, patched):
                return self._numpy_outputs(roles)

    def _fixes_targets(self, outputs: dict[str, Any] | None, targets: set[str]) -> bool:
        return outputs is not None and all(
            k in outputs and self._agrees(outputs[k], self.torch_out[k]) for k in targets)

    def _once(self, product: Product) -> bool:
        """Its statement ran once: a value put in its place stands for this one execution."""
        run = product.run
        return product.expr is not None and product.component is None and not product.in_place and run.repeat == 0 \
            and not any(r is not run and r.code is run.code and r.lineno == run.lineno for r in self.recorder.runs)

    def _torch_value_here(self, product: Product, targets: set[str]) -> tuple[TorchValue, np.ndarray] | None:
        """A torch intermediate that, put in this line's place, makes the targets agree."""
        value = np.asarray(product.value)
        if not _is_array(product.value) or not self._once(product):
            return None
        tried = 0
        for entry in self.torch_values.same_size(value.size):
            for _, candidate in entry.oriented(value.shape):
                if tried >= MAX_INJECTIONS or self.budget.expired(reserve=0.5):
                    return None
                if equal(value.astype(np.float64), candidate, 0.0, 0.0, 0.0):
                    continue
                tried += 1
                injected = np.array(candidate, dtype=value.dtype if value.dtype.kind == "f" else np.float64)
                outputs = self._rerun(product, ast.Name(INJECTED, ast.Load()), injected)
                if self._fixes_targets(outputs, targets):
                    return entry, injected
        return None

    def _structural_fix(self, product: Product, targets: set[str], right: np.ndarray | None) -> LineFix | None:
        expr = product.expr
        if expr is None:
            return None
        if product.in_place:
            return self._copy_fix(product, targets)
        values = {i.text: i.value for i in self._inputs(product)}
        deadline = self.budget.share(0.3)
        for edit in edits(expr, values, product.run.namespace):
            if time.perf_counter() > deadline:
                self.budget.skip(f"not every edit of {product.run.location} was tried: the time budget")
                break
            fix = self._check_edit(product, edit, targets, right)
            if fix is not None:
                return fix
        return None

    def _check_edit(self, product: Product, edit: Edit, targets: set[str], right: np.ndarray | None
                    ) -> LineFix | None:
        new_expr = _replaced(product.expr, edit.old, edit.new)
        try:
            result = evaluate(new_expr, product.run)
        except Exception:
            return None
        if product.component is not None:
            if not isinstance(result, tuple) or len(result) <= product.component:
                return None
            result = result[product.component]
        original = np.asarray(product.value)
        result_array = np.asarray(result)
        if result_array.shape == original.shape and np.array_equal(result_array, original):
            return None
        if right is not None and edit.kind != "axis" and (
                result_array.shape != right.shape or not self._agrees(result_array, right)):
            return None
        outputs = self._rerun(product, edit.new, old=edit.old)
        if not self._fixes_targets(outputs, targets):
            return None
        return LineFix(edit.kind, edit.text, code(new_expr), self._error(outputs, targets), edit.strength)

    def _copy_fix(self, product: Product, targets: set[str]) -> LineFix | None:
        """An in-place change of an array another name still holds: a ``.copy()`` where it was bound."""
        alias = self._aliasing_run(product)
        if alias is None:
            return None
        for name in alias.aliases:
            expr = _bound_expression(alias.stmt, name)
            if expr is None:
                continue
            copied = ast.Call(ast.Attribute(copy.deepcopy(expr), "copy", ast.Load()), [], [])
            outputs = self._rerun(product, copied, run=alias, old=expr)
            if self._fixes_targets(outputs, targets):
                return LineFix("copy", f"`{code(copied)}` in place of `{code(expr)}` at {alias.location} (a copy, "
                               "not the same array)", code(copied), self._error(outputs, targets), STRUCTURAL)
        return None

    def _aliasing_run(self, product: Product) -> Run | None:
        """The statement that bound the array ``product`` changes to a second name without copying it."""
        name = product.label.split("[")[0].split(".")[0]
        runs = [r for r in self.recorder.runs if r.index < product.run.index and name in r.aliases
                and r.code is product.run.code]
        return runs[-1] if runs else None

    def _factor_fix(self, product: Product, targets: set[str], right: np.ndarray | None) -> LineFix | None:
        """A constant factor on the whole line, or on one of its terms, that makes the targets agree."""
        expr = product.expr
        if expr is None or not _is_array(product.value):
            return None
        value = np.asarray(product.value, dtype=np.float64)
        factor = None
        if right is not None:
            factor = constant_ratio(right, value.reshape(right.shape), 1e-9)
        else:
            ratios = {constant_ratio(np.asarray(self.torch_out[k], dtype=np.float64).reshape(-1),
                                     np.asarray(self.outputs[k], dtype=np.float64).reshape(-1), 1e-9)
                      for k in targets}
            factor = ratios.pop() if len(ratios) == 1 else None
        if factor is not None and abs(factor - 1) > 1e-9:
            scaled = ast.BinOp(ast.Constant(_nice(factor)), ast.Mult(), copy.deepcopy(expr))
            outputs = self._rerun(product, scaled)
            if self._fixes_targets(outputs, targets):
                return LineFix("factor", f"{factor_text(_nice(factor))}× `{code(expr)}`", code(scaled),
                               self._error(outputs, targets), FITTED)
        if right is not None:
            return self._term_factor(product, targets, right)
        return None

    def _term_factor(self, product: Product, targets: set[str], right: np.ndarray) -> LineFix | None:
        value = np.asarray(product.value, dtype=np.float64).reshape(-1)
        missing = np.asarray(right, dtype=np.float64).reshape(-1) - value
        for term in terms(product.expr)[1:] + terms(product.expr)[:1]:
            try:
                t = np.asarray(evaluate(term, product.run), dtype=np.float64)
            except Exception:
                continue
            if t.size == 1:
                t = np.full(value.shape, float(t.reshape(-1)[0]))
            if t.size != value.size:
                continue
            alpha = constant_ratio(missing, t.reshape(-1), 1e-9)
            if alpha is None:
                continue
            sign = _sign_in(product.expr, term)
            factor = _nice(1 + alpha * sign)
            scaled = ast.BinOp(ast.Constant(factor), ast.Mult(), copy.deepcopy(term))
            outputs = self._rerun(product, scaled, old=term)
            if self._fixes_targets(outputs, targets):
                return LineFix("factor", f"{factor_text(factor)}× `{code(term)}`",
                               code(_replaced(product.expr, term, scaled)), self._error(outputs, targets), FITTED)
        return None


# ---- small helpers --------------------------------------------------------------------------


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def _nice(factor: float) -> float:
    """``factor`` snapped to a fraction with a small denominator within 1e-9 of it (1/8 for 0.12500000000000003)."""
    if not np.isfinite(factor) or factor == 0:
        return factor
    fraction = Fraction(factor).limit_denominator(4096)
    return float(fraction) if abs(float(fraction) - factor) <= 1e-9 * abs(factor) else factor


def _replaced(expr: ast.expr, old: ast.AST, new: ast.AST) -> ast.expr:
    """A copy of ``expr`` with its node ``old`` replaced by ``new``."""
    if old is expr:
        return copy.deepcopy(new)
    memo: dict[int, Any] = {}
    clone = copy.deepcopy(expr, memo)
    target = memo.get(id(old))

    class Swap(ast.NodeTransformer):
        def generic_visit(self, node: ast.AST) -> ast.AST:
            if node is target:
                return copy.deepcopy(new)
            return super().generic_visit(node)

    return Swap().visit(clone) if target is not None else clone


def _sign_in(expr: ast.expr, term: ast.expr) -> float:
    """+1 or −1: how ``term`` enters the sum ``expr``."""
    node = expr
    while isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        if node.right is term:
            return -1.0 if isinstance(node.op, ast.Sub) else 1.0
        node = node.left
    return 1.0


def _bound_expression(stmt: ast.stmt, name: str) -> ast.expr | None:
    if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
        return stmt.value
    return None
