"""What each line of the scenario's NumPy code computed, recorded while it re-runs one step.

A tracing hook (``sys.settrace``, only in frames of the user's own files: the
scenario and what it calls there, never NumPy or gradstep) follows the NumPy
functions line by line. After each statement it keeps a copy of every value the
statement bound or changed (a :class:`Product`: the statement, the name or the
returned dict entry, the value and the expression that computed it), and before
each statement the names in scope, so the statement can be evaluated again
later with one input swapped (:mod:`gradstep.diagnosis.localise`).

Every copy made here is remembered by identity, so a later statement's inputs
(``acts["z1"]`` in the backward pass) lead back to the statement that produced
them (``z1 = x @ w1`` in the forward pass).
"""

from __future__ import annotations

import ast
import inspect
import linecache
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import numpy as np

_PACKAGE = Path(__file__).resolve().parent.parent
_SKIPPED_CODE = {"<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>", "<lambda>"}
# Attributes that are operations on an array, not a value of their own: ``W.T`` reads ``W``.
ARRAY_OPERATIONS = {"T", "mT", "shape", "size", "ndim", "dtype", "real", "imag", "flat"}


def is_user_file(filename: str) -> bool:
    """The scenario's own code: not gradstep's (bundled scenarios are users' code), not a library's."""
    if not filename or filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    if path.is_relative_to(_PACKAGE / "scenarios"):
        return True
    if "site-packages" in filename or "dist-packages" in filename or path.is_relative_to(_PACKAGE):
        return False
    return not path.is_relative_to(Path(inspect.getfile(ast)).resolve().parent)


# ---- statements of a function, by line ---------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One function's parsed source: its statements by line, in the file's numbering."""

    tree: ast.Module
    lines: list[str]  # the file's lines
    by_line: dict[int, ast.stmt]

    def statement(self, lineno: int) -> ast.stmt | None:
        return self.by_line.get(lineno)

    def text(self, stmt: ast.stmt) -> str:
        """The statement as written, on one line (continuation lines joined)."""
        end = stmt.end_lineno or stmt.lineno
        parts = [self.lines[i - 1].strip() for i in range(stmt.lineno, end + 1) if 0 < i <= len(self.lines)]
        if isinstance(stmt, (ast.For, ast.While, ast.If, ast.With, ast.FunctionDef)):
            parts = parts[:1]
        return " ".join(p for p in parts if p)


_SOURCES: dict[CodeType, Source | None] = {}


def source_of(code: CodeType) -> Source | None:
    """The parsed source of ``code``'s function (cached), or None when it cannot be read."""
    if code not in _SOURCES:
        _SOURCES[code] = _parse(code)
    return _SOURCES[code]


def _parse(code: CodeType) -> Source | None:
    try:
        block, start = inspect.getsourcelines(code)
        tree = ast.parse(textwrap.dedent("".join(block)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    ast.increment_lineno(tree, start - 1)
    file_lines = linecache.getlines(code.co_filename)
    by_line: dict[int, ast.stmt] = {}

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                end = child.end_lineno or child.lineno
                for line in range(child.lineno, end + 1):
                    by_line[line] = child  # inner statements, visited later, take their own lines
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)) or \
                    node is tree:
                visit(child)

    visit(tree)
    return Source(tree, list(file_lines), by_line)


# ---- what a statement computed ------------------------------------------------------------


@dataclass(eq=False)
class Run:
    """One execution of one statement of the scenario's code."""

    index: int
    role: str  # the scenario function it ran under: "numpy.backward"
    code: CodeType  # the function the statement is in (a helper's, possibly)
    lineno: int  # the statement's first line
    stmt: ast.stmt
    text: str
    namespace: dict[str, Any]  # names in scope before it ran (recorded copies where there are some)
    globals: Mapping[str, Any]
    products: list[Product] = field(default_factory=list)
    changed_in_place: list[int] = field(default_factory=list)  # ids of recorded values it modified
    aliases: list[str] = field(default_factory=list)  # names it bound to an array made earlier (no copy)
    repeat: int = 0  # how many earlier runs of the same statement there were

    @property
    def filename(self) -> str:
        return self.code.co_filename

    @property
    def location(self) -> str:
        return f"{Path(self.filename).name}:{self.lineno}"


@dataclass(eq=False)
class Product:
    """A value a statement computed: the name it bound (or the returned entry) and the expression."""

    run: Run
    label: str  # "dz1", "return['W']", "return"
    value: Any  # the recorded copy
    expr: ast.expr | None  # the expression that computed it (None: not one expression)
    component: int | None = None  # position in a tuple the expression returns (a, b = f(x))
    in_place: bool = False  # it changed an array made earlier (x += ..., x[i] = ...)


@dataclass(eq=False)
class Argument:
    """A value a scenario function was called with: weights, batch, hyper-parameters, activations."""

    role: str
    path: str  # "weights['W']", "batch['x']"
    value: Any


class _Nothing:
    pass


NOTHING = _Nothing()


@dataclass
class _Frame:
    role: str
    source: Source
    seen: dict[str, Any]  # name -> the live object last seen bound to it
    current: Run | None = None
    last_line: int = 0


class LineRecorder:
    """Records the statements of user code run inside :meth:`calling`, with copies of their results.

    ``max_bytes`` bounds the copies; past it values are no longer copied and
    ``complete`` turns False.
    """

    def __init__(self, max_bytes: int = 256 * 2**20, max_runs: int = 20000, max_repeats: int = 50):
        self.runs: list[Run] = []
        self.max_bytes, self.max_runs, self.max_repeats = max_bytes, max_runs, max_repeats
        self.kept_bytes = 0
        self.complete = True
        self.copy_of: dict[int, Any] = {}  # id(live object) -> its recorded copy
        self.made_by: dict[int, Product | Argument] = {}  # id(recorded copy) -> where it came from
        self.live: list[Any] = []  # live objects whose ids are keys above: kept alive so ids stay unique
        self._frames: dict[FrameType, _Frame] = {}
        self._role = ""
        self._repeats: dict[tuple[CodeType, int], int] = {}

    # ---- running -----------------------------------------------------------------------
    @contextmanager
    def calling(self, role: str) -> Iterator[None]:
        """Record the user code that runs inside the block, as part of ``role`` ("numpy.backward")."""
        previous_trace = sys.gettrace()
        self._role = role
        sys.settrace(self._global)
        try:
            yield
        finally:
            sys.settrace(previous_trace)
            self._frames.clear()

    def call(self, role: str, fn: Callable[..., Any], args: Mapping[str, Any]) -> Any:
        """``fn(*args.values())`` recorded, its arguments noted under their names first."""
        for name, value in args.items():
            self.argument(role, name, value)
        with self.calling(role):
            return fn(*args.values())

    def argument(self, role: str, path: str, value: Any) -> Any:
        """Note ``value`` (arrays in dicts too) as an argument of ``role``; returns its recorded copy."""
        if isinstance(value, Mapping):
            return {k: self.argument(role, f"{path}[{k!r}]", v) for k, v in value.items()}
        if not _is_array(value):
            return value
        known = self.copy_of.get(id(value))
        if known is not None:
            return known
        copy = self._copy(value)
        if copy is not None:
            self._remember(value, copy, Argument(role, path, copy))
        return copy

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event != "call" or frame.f_code.co_name in _SKIPPED_CODE or not is_user_file(frame.f_code.co_filename):
            return None
        source = source_of(frame.f_code)
        if source is None:
            return None
        self._frames[frame] = _Frame(self._role, source, dict(frame.f_locals))
        for name, value in frame.f_locals.items():  # a helper's arguments: known values, or made in its call
            self.argument(self._role, f"{frame.f_code.co_name}({name})", value)
        return self._local

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        state = self._frames.get(frame)
        if state is None:
            return None
        if event == "line":
            stmt = state.source.statement(frame.f_lineno)
            if stmt is None:
                return self._local
            current = state.current
            if current is not None and stmt is current.stmt and frame.f_lineno > state.last_line:
                state.last_line = frame.f_lineno  # a continuation line of the same statement
                return self._local
            self._finish(state, frame.f_locals)
            self._start(state, frame, stmt)
        elif event == "return":
            self._finish(state, frame.f_locals, returned=arg)
            self._frames.pop(frame, None)
        return self._local

    def _start(self, state: _Frame, frame: FrameType, stmt: ast.stmt) -> None:
        if len(self.runs) >= self.max_runs:
            self.complete = False
            state.current = None
            return
        key = (frame.f_code, stmt.lineno)
        repeat = self._repeats.get(key, 0)
        self._repeats[key] = repeat + 1
        namespace = {n: self.copy_of.get(id(v), v) for n, v in frame.f_locals.items()}
        state.current = Run(len(self.runs), state.role, frame.f_code, stmt.lineno, stmt, state.source.text(stmt),
                            namespace, frame.f_globals, repeat=repeat)
        state.last_line = frame.f_lineno

    def _finish(self, state: _Frame, locals_now: Mapping[str, Any], returned: Any = NOTHING) -> None:
        run = state.current
        state.current = None
        if run is None:
            state.seen = dict(locals_now)
            return
        keep = run.repeat < self.max_repeats
        stores = _stored_names(run.stmt)
        for name, value in locals_now.items():
            new = state.seen.get(name, NOTHING) is not value
            if keep and new and _is_array(value) and id(value) in self.copy_of:
                run.aliases.append(name)
            elif keep and (new or name in stores):
                self._product(run, name, value, _expression_for(run.stmt, name), in_place=not new)
        if keep:
            self._stored_items(run, locals_now)
        if returned is not NOTHING and keep:
            self._returned(run, returned)
        state.seen = dict(locals_now)
        if keep and (run.products or run.changed_in_place or run.aliases):
            self.runs.append(run)

    def _stored_items(self, run: Run, locals_now: Mapping[str, Any]) -> None:
        """``grads["W"] = expr``, ``self.x = expr``, ``grads["W"] += expr``: the value stored in the container."""
        stmt = run.stmt
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(
            stmt, ast.AugAssign) else []
        for target in targets:
            if not isinstance(target, (ast.Subscript, ast.Attribute)) or not _chain(target):
                continue
            try:
                value = evaluate(target, run, {**run.namespace, **locals_now})
            except Exception:
                continue
            if isinstance(stmt, ast.AugAssign):
                expr = ast.copy_location(ast.BinOp(left=_loading(target), op=stmt.op, right=stmt.value), stmt.value)
                in_place = id(value) in self.copy_of
            else:
                expr, in_place = stmt.value, False
            self._product(run, ast.unparse(target), value, expr, in_place=in_place)

    def _returned(self, run: Run, value: Any) -> None:
        node = run.stmt.value if isinstance(run.stmt, ast.Return) else None
        if isinstance(value, Mapping):
            exprs = _dict_entries(node) if isinstance(node, ast.Dict) else {}
            for k, v in value.items():
                self._product(run, f"return[{k!r}]", v, exprs.get(k), in_place=False)
        else:
            self._product(run, "return", value, node, in_place=False)

    def _product(self, run: Run, label: str, value: Any, expr: tuple[ast.expr | None, int | None] | ast.expr | None,
                 in_place: bool) -> None:
        expr, component = expr if isinstance(expr, tuple) else (expr, None)
        if isinstance(value, (Mapping, list, tuple)):
            return  # containers: their arrays are recorded where they are computed
        if not (_is_array(value) or _is_number(value)):
            return
        known = self.copy_of.get(id(value)) if _is_array(value) else self.made_by.get(id(value))
        if known is not None and not in_place:
            return  # the same object under another name: already recorded where it was made
        copy = self._copy(value) if _is_array(value) else value
        if copy is None:
            return
        product = Product(run, label, copy, expr, component)
        run.products.append(product)
        if _is_array(value):
            if in_place and known is not None:
                run.changed_in_place.append(id(value))
                product.in_place = True
            self._remember(value, copy, product)
        elif isinstance(value, (float, np.floating)):  # fresh objects (unlike small ints): their ids say where from
            self._remember(value, value, product)

    def _remember(self, live: Any, copy: Any, origin: Product | Argument) -> None:
        self.copy_of[id(live)] = copy
        self.made_by[id(copy)] = origin
        self.live.append(live)
        self.live.append(copy)

    def _copy(self, value: Any) -> Any:
        nbytes = int(getattr(value, "nbytes", 0))
        if self.kept_bytes + nbytes > self.max_bytes:
            self.complete = False
            return None
        self.kept_bytes += nbytes
        return np.array(value, copy=True)

    # ---- reading ------------------------------------------------------------------------
    def origin(self, value: Any) -> Product | Argument | None:
        """Where a recorded value (or a live one the recording saw) came from."""
        found = self.made_by.get(id(value))
        if found is None and id(value) in self.copy_of:
            found = self.made_by.get(id(self.copy_of[id(value)]))
        return found


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _stored_names(stmt: ast.stmt) -> set[str]:
    """Names a statement stores into in place: ``x += ...``, ``x[i] = ...``, ``x.attr = ...``."""
    names: set[str] = set()
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.AugAssign):
        targets = [stmt.target]
    elif isinstance(stmt, ast.Assign):
        targets = [t for t in stmt.targets if not isinstance(t, ast.Name)]
    for target in targets:
        root = target
        while isinstance(root, (ast.Subscript, ast.Attribute)):
            root = root.value
        if isinstance(root, ast.Name):
            names.add(root.id)
    return names


def _expression_for(stmt: ast.stmt, name: str) -> tuple[ast.expr | None, int | None]:
    """The expression whose value ``name`` holds after ``stmt``, and its position in a tuple it returns."""
    if isinstance(stmt, ast.Assign):
        for target in stmt.targets:
            if isinstance(target, ast.Name) and target.id == name:
                return stmt.value, None
            if isinstance(target, ast.Tuple):
                for i, element in enumerate(target.elts):
                    if isinstance(element, ast.Name) and element.id == name:
                        if isinstance(stmt.value, ast.Tuple) and len(stmt.value.elts) == len(target.elts):
                            return stmt.value.elts[i], None
                        return stmt.value, i
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
        return stmt.value, None
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
        return ast.copy_location(ast.BinOp(left=ast.Name(name, ast.Load()), op=stmt.op, right=stmt.value),
                                 stmt.value), None
    return None, None


def _loading(target: ast.expr) -> ast.expr:
    """A store target as an expression that reads it."""
    node = ast.parse(ast.unparse(target), mode="eval").body
    return ast.copy_location(node, target)


def _dict_entries(node: ast.Dict) -> dict[Any, ast.expr]:
    out = {}
    for k, v in zip(node.keys, node.values, strict=True):
        if isinstance(k, ast.Constant):
            out[k.value] = v
    return out


# ---- the inputs of an expression ----------------------------------------------------------


def leaves(expr: ast.expr) -> list[ast.expr]:
    """The value-reading leaves of ``expr``: names, ``d["key"]`` look-ups, ``obj.attr`` (not ``W.T``).

    Function names are leaves too (``np.mean``); callers keep those that evaluate to arrays or numbers.
    """
    found: list[ast.expr] = []

    def visit(node: ast.AST) -> None:
        if _is_leaf(node):
            found.append(node)
        elif isinstance(node, ast.Call):
            for a in node.args:
                visit(a)
            for k in node.keywords:
                visit(k.value)
            if isinstance(node.func, ast.Attribute):
                visit(node.func.value)  # x.sum(): x is read
        elif isinstance(node, (ast.Lambda, ast.ListComp, ast.GeneratorExp, ast.DictComp, ast.SetComp)):
            return
        else:
            for child in ast.iter_child_nodes(node):
                visit(child)

    visit(expr)
    unique: dict[str, ast.expr] = {}
    for node in found:
        unique.setdefault(ast.unparse(node), node)
    return list(unique.values())


def _is_leaf(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return isinstance(node.ctx, ast.Load)
    if isinstance(node, ast.Subscript):
        return _chain(node.value) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)
    return isinstance(node, ast.Attribute) and node.attr not in ARRAY_OPERATIONS and _chain(node.value)


def _chain(node: ast.expr) -> bool:
    """A name, or look-ups and attributes on one: what a leaf may be built on."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        if isinstance(node, ast.Subscript) and not (isinstance(node.slice, ast.Constant)
                                                    and isinstance(node.slice.value, str)):
            return False
        node = node.value
    return isinstance(node, ast.Name)


def evaluate(expr: ast.expr, run: Run, namespace: Mapping[str, Any] | None = None) -> Any:
    """``expr`` evaluated as ``run``'s statement would have: its globals, the names in scope before it."""
    code = compile(ast.fix_missing_locations(ast.Expression(body=expr)), run.filename, "eval")
    with np.errstate(all="ignore"):
        return eval(code, dict(run.globals), dict(run.namespace if namespace is None else namespace))
