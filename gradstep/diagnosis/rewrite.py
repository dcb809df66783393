"""The scenario's NumPy functions with one expression of one statement replaced.

A fix the line localiser proposes (``W.T`` for ``W``, another axis, ``2 *`` in
front of a term) or a value it wants to try in a statement's place is checked
by running the whole NumPy step again with that one change: the function that
holds the statement is compiled anew from its source, with the expression
swapped, in a copy of its module's namespace. A helper the scenario functions
call is swapped in its module only while the re-run lasts.
"""

from __future__ import annotations

import ast
import copy
import inspect
import textwrap
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FunctionType
from typing import Any

from gradstep.diagnosis.lines import Run

INJECTED = "__gradstep_value__"


def same_place(a: ast.AST, b: ast.AST) -> bool:
    return (type(a) is type(b) and getattr(a, "lineno", None) == getattr(b, "lineno", None)
            and getattr(a, "col_offset", None) == getattr(b, "col_offset", None)
            and getattr(a, "end_lineno", None) == getattr(b, "end_lineno", None)
            and getattr(a, "end_col_offset", None) == getattr(b, "end_col_offset", None))


class _Swap(ast.NodeTransformer):
    def __init__(self, old: ast.AST, new: ast.AST):
        self.old, self.new, self.done = old, new, False

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if not self.done and same_place(node, self.old):
            self.done = True
            return ast.copy_location(copy.deepcopy(self.new), node)
        return super().generic_visit(node)


def function_of(run: Run, roles: Mapping[str, Callable[..., Any]]) -> Callable[..., Any] | None:
    """The function object whose code holds ``run``'s statement: a scenario function or a helper of its module."""
    for fn in roles.values():
        if getattr(fn, "__code__", None) is run.code:
            return fn
    for value in list(run.globals.values()):
        if getattr(value, "__code__", None) is run.code:
            return value
        if inspect.isclass(value):
            for attr in vars(value).values():
                if getattr(attr, "__code__", None) is run.code:
                    return attr
    return None


def rewritten(fn: Callable[..., Any], old: ast.AST, new: ast.AST, value: Any = None) -> Callable[..., Any] | None:
    """``fn`` compiled again with the node at ``old``'s place replaced by ``new`` (None: it cannot be)."""
    if not isinstance(fn, FunctionType) or fn.__closure__:
        return None
    try:
        lines, start = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    ast.increment_lineno(tree, start - 1)  # columns stay dedented, as gradstep.diagnosis.lines parses them
    swap = _Swap(old, new)
    tree = swap.visit(tree)
    if not swap.done or not tree.body or not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    tree.body[0].decorator_list = []
    namespace = dict(fn.__globals__)
    namespace[INJECTED] = value
    try:
        exec(compile(ast.fix_missing_locations(tree), fn.__code__.co_filename, "exec"), namespace)
    except Exception:
        return None
    new_fn = namespace.get(tree.body[0].name)
    if not isinstance(new_fn, FunctionType):
        return None
    new_fn.__defaults__, new_fn.__kwdefaults__ = fn.__defaults__, fn.__kwdefaults__
    return new_fn


@contextmanager
def installed(run: Run, original: Callable[..., Any], replacement: Callable[..., Any]) -> Iterator[None]:
    """``replacement`` in place of the helper ``original`` in its module (or class) while the block runs."""
    homes = [(run.globals, name) for name, value in list(run.globals.items()) if value is original]
    for value in list(run.globals.values()):
        if inspect.isclass(value):
            homes += [(_ClassDict(value), name) for name, attr in vars(value).items() if attr is original]
    defaults = [fn for fn in list(run.globals.values()) if isinstance(fn, FunctionType) and fn.__defaults__
                and any(d is original for d in fn.__defaults__)]  # def f(x, norm=helper): bound when defined
    saved = [fn.__defaults__ for fn in defaults]
    for home, name in homes:
        home[name] = replacement
    for fn in defaults:
        fn.__defaults__ = tuple(replacement if d is original else d for d in fn.__defaults__)
    try:
        yield
    finally:
        for home, name in homes:
            home[name] = original
        for fn, before in zip(defaults, saved, strict=True):
            fn.__defaults__ = before


class _ClassDict:
    def __init__(self, cls: type):
        self.cls = cls

    def __setitem__(self, name: str, value: Any) -> None:
        setattr(self.cls, name, value)

