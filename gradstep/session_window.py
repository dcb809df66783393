"""The window of full tensors in a session file: packed by tensor, so a long window is a few arrays.

A window can hold thousands of small steps. Stored one array per tensor per
step, that would be a zip member each; instead every tensor (side, key) of the
same shape and dtype across the window's steps is stacked into one array, with
the positions (rows of the window) it belongs to. Each row names its *layout*:
the keys of each side in the record's own order (the order the app shows them
in), shared by every row with the same keys.

:class:`RecordedWindow` checks a packed window against itself (every key of
every row present exactly once, positions in range, steps unique) and builds
a step's :class:`~gradstep.trace.StepRecord` when it is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradstep.trace import StepRecord

SIDES = ("numpy", "torch", "local")


class WindowError(ValueError):
    """A packed window that does not hold together."""


def pack_window(records: list[StepRecord], notes: list[str]) -> dict[str, Any]:
    """Full step records (the trace's window, and any others) as a tree of a few stacked arrays."""
    rows: dict[str, list[int]] = {"steps": [], "epochs": [], "indices": [], "layouts": []}
    layouts: dict[tuple, int] = {}
    groups: dict[tuple, tuple[list[int], list[np.ndarray]]] = {}
    metrics = []
    for record in records:
        step = record.step
        position = len(rows["steps"])
        layout = []
        for side in SIDES:
            tensors = getattr(record, side)
            if tensors is None:
                layout.append(None)
                continue
            kept = []
            for key, value in tensors.items():
                stored = _stored(value)
                if stored is None:
                    notes.append(f"window step {step}, {side} {key}: a {type(value).__name__}, not an array; left out")
                    continue
                kind, array = stored
                positions, arrays = groups.setdefault((side, key, kind, array.dtype.str, array.shape), ([], []))
                positions.append(position)
                arrays.append(array)
                kept.append(key)
            layout.append(tuple(kept))
        for name, value in zip(rows, (record.step, record.epoch, record.index,
                                      layouts.setdefault(tuple(layout), len(layouts))), strict=True):
            rows[name].append(int(value))
        if record.metrics is not None:
            metrics.append([position, record.metrics])
    return {
        **{name: np.array(values, dtype=np.int64) for name, values in rows.items()},
        "layout_keys": [dict(zip(SIDES, (None if keys is None else list(keys) for keys in layout), strict=True))
                        for layout in layouts],
        "tensors": [{"side": side, "key": key, "kind": kind, "positions": np.array(positions, dtype=np.int64),
                     "values": np.stack(arrays)}
                    for (side, key, kind, _, _), (positions, arrays) in groups.items()],
        "metrics": metrics,
    }


def _stored(value: Any) -> tuple[str, np.ndarray] | None:
    """How a record's value is kept: an array as it is, a NumPy or Python scalar as a 0-d array."""
    if isinstance(value, np.ndarray):
        return "ndarray", value
    if isinstance(value, np.generic):
        return "generic", np.asarray(value)
    if isinstance(value, (bool, int, float)):
        return "python", np.asarray(value)
    return None


class RecordedWindow:
    """A packed window, checked; builds the record of one of its steps on demand."""

    def __init__(self, tree: Any, steps_run: int) -> None:
        tree = _dict(tree, "window")
        self.steps, self.epochs, self.indices, layout_of = (
            _ints(tree.get(name), f"window {name}") for name in ("steps", "epochs", "indices", "layouts"))
        n = len(self.steps)
        if not all(len(a) == n for a in (self.epochs, self.indices, layout_of)):
            raise WindowError("window rows of different lengths")
        if n and (self.steps.min() < 0 or self.steps.max() >= steps_run or len(np.unique(self.steps)) != n):
            raise WindowError(f"window steps outside the {steps_run} steps run, or repeated")
        self.layouts = [_layout(v) for v in _list(tree.get("layout_keys"), "window layout_keys")]
        if n and (layout_of.min() < 0 or layout_of.max() >= len(self.layouts)):
            raise WindowError("a window row refers to a layout that is not there")
        self._layout_of = layout_of
        self._row = {int(s): i for i, s in enumerate(self.steps)}
        self._groups = self._check_groups(_list(tree.get("tensors"), "window tensors"), n)
        self._metrics = self._check_metrics(_list(tree.get("metrics"), "window metrics"), n)

    def _check_groups(self, groups: list, n: int) -> dict[tuple[str, str], list[dict[str, Any]]]:
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for group in groups:
            group = _dict(group, "a window tensor")
            side, key, kind = group.get("side"), group.get("key"), group.get("kind")
            positions, values = _ints(group.get("positions"), "window positions"), group.get("values")
            if side not in SIDES or not isinstance(key, str) or kind not in ("ndarray", "generic", "python"):
                raise WindowError("a window tensor without a side, key or kind")
            if not isinstance(values, np.ndarray) or values.ndim < 1 or len(values) != len(positions):
                raise WindowError(f"window tensor {side} {key}: values do not match their positions")
            if len(positions) and (positions.min() < 0 or positions.max() >= n):
                raise WindowError(f"window tensor {side} {key}: positions outside the window")
            order = np.argsort(positions, kind="stable")
            by_key.setdefault((side, key), []).append(
                {"kind": kind, "positions": positions[order], "values": values, "order": order})
        for (side, key), parts in by_key.items():
            positions = np.concatenate([p["positions"] for p in parts])
            wanted = np.flatnonzero(np.isin(self._layout_of, self._layouts_with(side, key)))
            if len(np.unique(positions)) != len(positions) or not np.array_equal(np.sort(positions), wanted):
                raise WindowError(f"window tensor {side} {key} is not stored exactly once for each step that has it")
        for index, layout in enumerate(self.layouts):
            for side, keys in layout.items():
                missing = [k for k in keys or () if (side, k) not in by_key]
                if missing and np.any(self._layout_of == index):
                    raise WindowError(f"window tensor {side} {missing[0]} is missing")
        return by_key

    def _layouts_with(self, side: str, key: str) -> list[int]:
        return [i for i, layout in enumerate(self.layouts) if key in (layout.get(side) or ())]

    @staticmethod
    def _check_metrics(pairs: list, n: int) -> dict[int, Any]:
        out = {}
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) is int and 0 <= pair[0] < n
                    and isinstance(pair[1], dict)):
                raise WindowError("window metrics are not [row, metrics] pairs")
            out[pair[0]] = pair[1]
        return out

    def window_steps(self) -> list[int]:
        return sorted(int(s) for s in self.steps)

    def record(self, step: int) -> StepRecord | None:
        """The full tensors of ``step``, or None when the window does not hold it."""
        row = self._row.get(step)
        if row is None:
            return None
        layout = self.layouts[int(self._layout_of[row])]
        sides = {side: None if keys is None else {k: self._value(side, k, row) for k in keys}
                 for side, keys in layout.items()}
        return StepRecord(step, int(self.epochs[row]), int(self.indices[row]), sides["numpy"], sides["torch"],
                          sides["local"], self._metrics.get(row))

    def _value(self, side: str, key: str, row: int) -> Any:
        for part in self._groups[(side, key)]:
            at = int(np.searchsorted(part["positions"], row))
            if at < len(part["positions"]) and part["positions"][at] == row:
                values = part["values"]
                i = int(part["order"][at])
                if part["kind"] == "ndarray":
                    return values[i, ...]
                scalar = values[i, ...][()]
                return scalar.item() if part["kind"] == "python" else scalar
        raise KeyError(key)  # not reached: every key of every row was checked at load


def _layout(value: Any) -> dict[str, list[str] | None]:
    value = _dict(value, "a window layout")
    out = {}
    for side in SIDES:
        keys = value.get(side)
        if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)
                                     and len(set(keys)) == len(keys)):
            raise WindowError(f"a window layout's {side} keys are not a list of names")
        out[side] = keys
    if out["numpy"] is None or out["torch"] is None:
        raise WindowError("a window layout without NumPy or torch keys")
    return out


def _ints(value: Any, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "iu":
        raise WindowError(f"{what} is not a 1-d integer array")
    return value.astype(np.int64)


def _dict(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise WindowError(f"{what} is not a JSON object")
    return value


def _list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise WindowError(f"{what} is not a list")
    return value
