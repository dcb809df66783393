"""A small tree codec: Python values to JSON, with the arrays kept apart, and back, never through pickle.

What it encodes: ``None``, ``bool``, ``int``, ``str``, ``float`` (NaN and ±Inf
as ``{"$float": "nan"}``; -0.0 and every other float exactly, as JSON's
shortest round-trip decimal), ``list``, ``tuple``, ``dict`` (any key it can
encode), NumPy arrays and scalars of a plain numeric or bool dtype, torch
tensors, and the dataclasses and enums the caller names. Arrays go out through
a ``put`` callback that returns a reference (a member of the session file);
the JSON holds the reference. Anything else (an arbitrary object in a user's
state dict) is dropped, and a note says where: nothing is ever pickled, and
decoding only ever builds the types listed here, so a file from someone else
cannot run code.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradstep.safe_text import shown

Put = Callable[[np.ndarray], str]
Get = Callable[[str], np.ndarray]

PLAIN_KINDS = "biufc"  # bool, signed, unsigned, float, complex: no objects, strings or records
_SPECIAL = ("$float", "$tuple", "$dict", "$array", "$scalar", "$tensor", "$enum", "$dataclass")
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_MAX_DEPTH = 64
_DROPPED = object()


class TreeError(ValueError):
    """An encoded tree that is not one this codec writes: says where and what."""


def plain_dtype(dtype: np.dtype) -> bool:
    """A dtype whose bytes are only numbers: safe to read without pickle."""
    return dtype.kind in PLAIN_KINDS and dtype.fields is None and dtype.subdtype is None and not dtype.hasobject


class Encoder:
    """Encodes trees, sending arrays to ``put`` and noting what it had to drop."""

    def __init__(self, put: Put, types: Mapping[str, type] | None = None) -> None:
        self.put = put
        self.types = {cls: name for name, cls in (types or {}).items()}
        self.notes: list[str] = []

    def encode(self, value: Any, path: str = "") -> Any:
        out = self._encode(value, path)
        return None if out is _DROPPED else out

    def _encode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.generic):  # first: np.float64 is a float too, and its type must come back
            return self._array(np.asarray(value), "$scalar", path)
        if isinstance(value, enum.Enum):
            return self._enum(value, path)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else {"$float": _float_name(value)}
        if isinstance(value, np.ndarray):
            return self._array(value, "$array", path)
        if _is_tensor(value):
            return self._tensor(value, path)
        if dataclasses.is_dataclass(value) and type(value) in self.types:
            fields = {f.name: self.encode(getattr(value, f.name), f"{path}.{f.name}")
                      for f in dataclasses.fields(value)}
            return {"$dataclass": self.types[type(value)], "fields": fields}
        if isinstance(value, (list, tuple)):
            items = [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
            return items if isinstance(value, list) else {"$tuple": items}
        if isinstance(value, Mapping):
            return self._mapping(value, path)
        return self._drop(value, path)

    def _enum(self, value: enum.Enum, path: str) -> Any:
        if type(value) not in self.types:
            return self._drop(value, path)
        return {"$enum": self.types[type(value)], "value": self.encode(value.value, path)}

    def _array(self, array: np.ndarray, tag: str, path: str) -> Any:
        if not plain_dtype(array.dtype):
            return self._drop(array, path, f"an array of dtype {array.dtype}")
        return {tag: self.put(array)}

    def _tensor(self, tensor: Any, path: str) -> Any:
        import torch

        t = tensor.detach()
        if t.layout != torch.strided or t.is_quantized:
            return self._drop(tensor, path, f"a {t.layout} tensor")
        name = str(t.dtype).removeprefix("torch.")
        if name not in tensor_dtypes():
            return self._drop(tensor, path, f"a {name} tensor")
        if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: its bits, as int16
            t = t.view(torch.int16)
        return {"$tensor": self.put(t.cpu().numpy()), "dtype": name, "device": str(tensor.device)}

    def _mapping(self, value: Mapping, path: str) -> Any:
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            out = {}
            for k, v in value.items():
                encoded = self._encode(v, f"{path}.{k}")
                if encoded is not _DROPPED:
                    out[k] = encoded
            return out
        pairs = []
        for k, v in value.items():
            key = self._encode(k, f"{path}.<key {k!r}>")
            encoded = self._encode(v, f"{path}[{k!r}]")
            if key is not _DROPPED and encoded is not _DROPPED:
                pairs.append([key, encoded])
        return {"$dict": pairs}

    def _drop(self, value: Any, path: str, what: str | None = None) -> object:
        what = what or f"a {type(value).__module__}.{type(value).__qualname__}"
        self.notes.append(f"{path or 'value'}: {what} cannot be saved without pickle; left out")
        return _DROPPED


def _float_name(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # no tensor can exist unless torch is loaded
    return torch is not None and isinstance(value, torch.Tensor)


def tensor_dtypes() -> dict[str, Any]:
    """The torch dtypes a file may hold, by name: decoding builds only these."""
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
            "float64": torch.float64, "complex64": torch.complex64, "complex128": torch.complex128,
            "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
            "int64": torch.int64, "bool": torch.bool}


class Decoder:
    """Decodes what :class:`Encoder` wrote, building only the listed types; :class:`TreeError` otherwise."""

    def __init__(self, get: Get, types: Mapping[str, type] | None = None) -> None:
        self.get = get
        self.types = dict(types or {})

    def decode(self, tree: Any, path: str = "", depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise TreeError(f"{path}: nested more than {_MAX_DEPTH} deep")
        if tree is None or isinstance(tree, (bool, int, float, str)):
            return tree
        if isinstance(tree, list):
            return [self.decode(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(tree)]
        if not isinstance(tree, dict):
            raise TreeError(f"{path}: unexpected {type(tree).__name__}")
        tag = next((k for k in tree if k.startswith("$")), None)
        if tag is None:
            return {k: self.decode(v, f"{path}.{k}", depth + 1) for k, v in tree.items()}
        if tag not in _SPECIAL:
            raise TreeError(f"{path}: unknown tag {shown(tag)}")
        return getattr(self, "_" + tag[1:])(tree, path, depth + 1)

    def _float(self, tree: dict, path: str, depth: int) -> float:
        name = tree["$float"]
        if name not in _FLOATS:
            raise TreeError(f"{path}: {shown(name)} is not nan, inf or -inf")
        return _FLOATS[name]

    def _tuple(self, tree: dict, path: str, depth: int) -> tuple:
        return tuple(self.decode(_of(tree, "$tuple", list, path), path, depth))

    def _dict(self, tree: dict, path: str, depth: int) -> dict:
        out = {}
        for pair in _of(tree, "$dict", list, path):
            if not isinstance(pair, list) or len(pair) != 2:
                raise TreeError(f"{path}: a $dict entry is not a [key, value] pair")
            key = self.decode(pair[0], f"{path}.<key>", depth)
            try:
                out[key] = self.decode(pair[1], f"{path}[{shown(key)}]", depth)
            except TypeError as error:  # an unhashable key
                raise TreeError(f"{path}: a key of type {type(key).__name__}") from error
        return out

    def _array(self, tree: dict, path: str, depth: int) -> np.ndarray:
        return self.get(_of(tree, "$array", str, path))

    def _scalar(self, tree: dict, path: str, depth: int) -> np.generic:
        array = self.get(_of(tree, "$scalar", str, path))
        if array.shape != ():
            raise TreeError(f"{path}: a scalar of shape {array.shape}")
        return array[()]

    def _tensor(self, tree: dict, path: str, depth: int) -> Any:
        import torch

        array = self.get(_of(tree, "$tensor", str, path))
        name = tree.get("dtype")
        dtypes = tensor_dtypes()
        if name not in dtypes:
            raise TreeError(f"{path}: unknown tensor dtype {shown(name)}")
        tensor = torch.from_numpy(np.array(array, copy=True))  # its own writable memory
        if name == "bfloat16" and tensor.dtype == torch.int16:
            tensor = tensor.view(torch.bfloat16)
        if tensor.dtype != dtypes[name]:
            raise TreeError(f"{path}: a {name} tensor stored as {array.dtype}")
        return tensor

    def _enum(self, tree: dict, path: str, depth: int) -> enum.Enum:
        cls = self._type(tree, "$enum", path)
        try:
            return cls(self.decode(tree.get("value"), path, depth))
        except ValueError as error:
            raise TreeError(f"{path}: {error}") from error

    def _dataclass(self, tree: dict, path: str, depth: int) -> Any:
        cls = self._type(tree, "$dataclass", path)
        fields = _of(tree, "fields", dict, path)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - names
        if unknown:
            raise TreeError(f"{path}: {cls.__name__} has no field {shown(sorted(unknown)[0])}")
        values = {k: self.decode(v, f"{path}.{k}", depth) for k, v in fields.items()}
        hints = typing.get_type_hints(cls)
        for name, value in values.items():
            if not _matches(value, hints[name]):
                raise TreeError(f"{path}.{name}: a {type(value).__name__} where {cls.__name__} has {hints[name]}")
        try:
            return cls(**values)
        except TypeError as error:  # a required field missing
            raise TreeError(f"{path}: {error}") from error

    def _type(self, tree: dict, tag: str, path: str) -> type:
        name = tree[tag]
        if not isinstance(name, str) or name not in self.types:
            raise TreeError(f"{path}: {shown(name)} is not a type a session file may hold")
        return self.types[name]


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the annotated type, on the surface (``tuple[int, ...]``: a tuple)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, (bool, np.bool_)):
        return hint is bool or (hint is np.generic and isinstance(value, np.bool_))
    if hint is int:
        return isinstance(value, (int, np.integer))
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating))
    return isinstance(value, origin or hint)


def _of(tree: dict, key: str, kind: type, path: str) -> Any:
    value = tree.get(key)
    if not isinstance(value, kind):
        raise TreeError(f"{path}: {key} must be a {kind.__name__}")
    return value
