"""Candidate fixes of one statement: the small edits that turn a plausible line into the right one.

Each :class:`Edit` replaces one node of the statement's expression: an input
swapped for another recorded value of the same shape (``a1`` for ``z1``), a
2-D input transposed (``W.T`` for ``W``), a reduction over another axis, a
divisor swapped for another size of the step (the batch size for the number of
features), the operands of ``-``, ``/`` or ``@`` exchanged, ``>`` for ``>=``,
``ddof`` changed, ``sum`` for ``mean``, a term dropped, a missing ``.copy()``.
Constant factors are fitted separately (:mod:`gradstep.diagnosis.localise`):
they need the numbers, not the syntax.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradstep.diagnosis.lines import leaves

REDUCERS = {"sum", "mean", "max", "min", "std", "var", "argmax", "argmin", "prod", "norm", "cumsum", "median",
            "average", "nansum", "nanmean", "amax", "amin", "logsumexp", "softmax"}
SWAPPED_COMPARISONS = {ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Lt: ast.LtE, ast.LtE: ast.Lt}
ORDERED_OPS = (ast.Sub, ast.Div, ast.MatMult, ast.Pow, ast.FloorDiv)
# How much an edit says: a structural one names the fix; one fitted number only fits.
STRUCTURAL, FITTED = 2, 1


@dataclass(frozen=True)
class Edit:
    kind: str  # "swap", "transpose", "axis", "divisor", "operands", "comparison", "ddof", "reduction", "drop", "copy"
    text: str  # "`a1` in place of `z1`"
    old: ast.AST
    new: ast.AST
    strength: int = STRUCTURAL


def code(node: ast.AST) -> str:
    return ast.unparse(node)


def scope_arrays(namespace: Mapping[str, Any]) -> list[tuple[str, ast.expr, np.ndarray]]:
    """Every array a statement could have read: names in scope first, then one look-up into dicts in scope
    (``acts["a1"]``) for values no name holds."""
    out = [(name, ast.Name(name, ast.Load()), value) for name, value in namespace.items() if _array(value)]
    for name, value in namespace.items():
        if isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str) and _array(item) and not any(_same(item, v) for _, _, v in out):
                    node = ast.Subscript(ast.Name(name, ast.Load()), ast.Constant(key), ast.Load())
                    out.append((code(node), node, item))
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b))


def sizes_in(arrays: list[tuple[str, ast.expr, np.ndarray]]) -> list[int]:
    found = {1, 2}
    for _, _, a in arrays:
        found.update(int(d) for d in a.shape)
        found.add(int(a.size))
    return sorted(s for s in found if s > 0)


def edits(expr: ast.expr, values: Mapping[str, Any], namespace: Mapping[str, Any], aliasing: bool = False
          ) -> Iterator[Edit]:
    """Candidate edits of ``expr``; ``values`` holds its leaves' values by their code."""
    in_scope = scope_arrays(namespace)
    transposed = ast.Attribute(expr, "T", ast.Load())
    yield Edit("transpose", f"the result transposed, `({code(expr)}).T`,", expr, transposed)
    yield from _input_edits(expr, values, in_scope)
    for node in ast.walk(expr):
        if isinstance(node, ast.BinOp):
            yield from _binop_edits(node, in_scope, values)
        elif isinstance(node, ast.Compare):
            yield from _comparison_edits(node)
        elif isinstance(node, ast.Call):
            yield from _call_edits(node)
    if aliasing and _is_leaf(expr):
        copied = ast.Call(ast.Attribute(expr, "copy", ast.Load()), [], [])
        yield Edit("copy", f"`{code(copied)}` in place of `{code(expr)}` (a copy, not the same array)", expr, copied)


def _input_edits(expr: ast.expr, values: Mapping[str, Any], in_scope: list) -> Iterator[Edit]:
    for leaf in leaves(expr):
        text = code(leaf)
        value = values.get(text)
        if not _array(value):
            continue
        if value.ndim == 2 and min(value.shape) > 1:
            transposed = ast.Attribute(leaf, "T", ast.Load())
            yield Edit("transpose", f"`{code(transposed)}` in place of `{text}`", leaf, transposed)
        for other_text, node, other in in_scope:
            if other_text == text or other.shape != value.shape or other is value:
                continue
            if np.array_equal(other, value):
                continue
            yield Edit("swap", f"`{other_text}` in place of `{text}`", leaf, node)


def _binop_edits(node: ast.BinOp, in_scope: list, values: Mapping[str, Any]) -> Iterator[Edit]:
    if isinstance(node.op, ORDERED_OPS):
        swapped = ast.BinOp(node.right, node.op, node.left)
        yield Edit("operands", f"`{code(swapped)}` in place of `{code(node)}`", node, swapped)
    if isinstance(node.op, ast.Div):
        yield Edit("divisor", f"no division by `{code(node.right)}`", node, node.left)
        for size in sizes_in(in_scope):
            if size == 1:
                continue
            new = ast.BinOp(node.left, ast.Div(), ast.Constant(size))
            yield Edit("divisor", f"`/ {size}` in place of `/ {code(node.right)}`", node, new)
    if isinstance(node.op, (ast.Add, ast.Sub)):
        yield Edit("drop", f"`{code(node.left)}` alone, without `{_op(node.op)} {code(node.right)}`", node, node.left)
        if isinstance(node.op, ast.Add):
            yield Edit("drop", f"`{code(node.right)}` alone, without `{code(node.left)} +`", node, node.right)


def _comparison_edits(node: ast.Compare) -> Iterator[Edit]:
    for i, op in enumerate(node.ops):
        other = SWAPPED_COMPARISONS.get(type(op))
        if other is None:
            continue
        ops = list(node.ops)
        ops[i] = other()
        new = ast.Compare(node.left, ops, node.comparators)
        yield Edit("comparison", f"`{_cmp(other)}` in place of `{_cmp(type(op))}`", node, new)


def _call_edits(node: ast.Call) -> Iterator[Edit]:
    name = _called_name(node)
    plain = isinstance(node.func, ast.Name) or (isinstance(node.func, ast.Attribute) and _is_module(node.func.value))
    if node.args and plain and name not in REDUCERS:
        yield Edit("call", f"`{code(node.args[0])}` in place of `{code(node)}`", node, node.args[0])
    if name in REDUCERS:
        yield from _axis_edits(node, name)
    if name in ("std", "var"):
        current = next((k.value for k in node.keywords if k.arg == "ddof"), ast.Constant(0))
        ddof = 1 if isinstance(current, ast.Constant) and current.value == 0 else 0
        keywords = [k for k in node.keywords if k.arg != "ddof"] + [ast.keyword("ddof", ast.Constant(ddof))]
        new = ast.Call(node.func, node.args, keywords)
        yield Edit("ddof", f"ddof={ddof} in `{code(new)}`", node, new)
    if name in ("mean", "sum") and isinstance(node.func, ast.Attribute):
        other = "sum" if name == "mean" else "mean"
        new = ast.Call(ast.Attribute(node.func.value, other, ast.Load()), node.args, node.keywords)
        yield Edit("reduction", f"`{code(new)}` in place of `{code(node)}`", node, new)


def _axis_edits(node: ast.Call, name: str) -> Iterator[Edit]:
    method = isinstance(node.func, ast.Attribute) and not _is_module(node.func.value)
    position = 0 if method else 1  # x.sum(0) / np.sum(x, 0)
    current: ast.expr | None = next((k.value for k in node.keywords if k.arg == "axis"), None)
    if current is None and len(node.args) > position:
        current = node.args[position]
    now = current.value if isinstance(current, ast.Constant) else ("?" if current is not None else None)
    for axis in (None, 0, 1, -1):
        if axis == now or (now == "?" and axis is None):
            continue
        args, keywords = list(node.args), list(node.keywords)
        if current is not None and any(k.arg == "axis" for k in keywords):
            keywords = [ast.keyword("axis", ast.Constant(axis)) if k.arg == "axis" else k for k in keywords]
        elif current is not None:
            args[position] = ast.Constant(axis)
        elif axis is not None:
            keywords.append(ast.keyword("axis", ast.Constant(axis)))
        new = ast.Call(node.func, args, keywords)
        yield Edit("axis", f"`{code(new)}` in place of `{code(node)}`", node, new)


def _called_name(node: ast.Call) -> str:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    if isinstance(node.func, ast.Name):
        return node.func.id
    return ""


def _is_module(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("np", "numpy", "math", "scipy", "special")


def _is_leaf(expr: ast.expr) -> bool:
    return isinstance(expr, (ast.Name, ast.Subscript, ast.Attribute))


def _array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size > 0


def _op(op: ast.operator) -> str:
    return {ast.Add: "+", ast.Sub: "-"}.get(type(op), "?")


def _cmp(op: type) -> str:
    return {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<="}[op]


def terms(expr: ast.expr) -> list[ast.expr]:
    """The additive terms of ``expr`` (``a + b - c``: a, b, c), for a constant factor fitted on one of them."""
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, (ast.Add, ast.Sub)):
        return [*terms(expr.left), expr.right]
    return [expr]
