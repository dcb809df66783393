"""Every value torch computes in one step, to look a NumPy value up in.

While the float64 torch replica runs forward, loss and backward, a
``TorchDispatchMode`` keeps a float64 copy of the output of every ATen
operation (autograd's backward operations included: on the CPU they run on the
calling thread, inside the mode). Views (``t``, ``view``, ``expand``) are left
out: :meth:`TorchValues.match` tries a value as it is, reshaped and transposed.
The weights, the batch and the step's named tensors are added in the NumPy
side's layout, so a mapping such as ``bias_first`` is looked through too.

Look-ups are by element count; a big tensor is compared on a fixed sample of
positions first and in full only when the sample agrees.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

SAMPLED = 1 << 14  # tensors above this many elements are screened on a sample first
SAMPLE_POSITIONS = 32


@dataclass(eq=False)
class TorchValue:
    name: str  # "aten.mm", "grad fc1.weight", "activation h"
    array: np.ndarray  # float64
    scale: float = 0.0
    _samples: dict[tuple, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scale = float(np.max(np.abs(self.array), initial=0.0)) if self.array.size else 0.0

    def oriented(self, shape: tuple[int, ...]) -> list[tuple[str, np.ndarray]]:
        """This value in ``shape``: as it is (reshaped), and transposed where a 2-D transpose fits."""
        a = self.array
        out = [("", a.reshape(shape))]
        if a.ndim == 2 and a.shape[::-1] == shape and a.shape[0] > 1 and a.shape[1] > 1:
            out.append((".T", a.T))
        return out


class TorchValues:
    """The step's torch values, by element count."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.values: list[TorchValue] = []
        self.by_size: dict[int, list[TorchValue]] = {}
        self.max_bytes = max_bytes
        self.kept_bytes = 0
        self.complete = True
        self._positions: dict[int, np.ndarray] = {}

    def add(self, name: str, value: Any) -> None:
        if torch.is_tensor(value):
            if not value.is_floating_point() or value.is_sparse:
                return
            value = value.detach().to(dtype=torch.float64, device="cpu").numpy()
        array = np.asarray(value)
        if array.dtype.kind not in "biuf" or array.size == 0:
            return
        if self.kept_bytes + array.size * 8 > self.max_bytes:
            self.complete = False
            return
        self.kept_bytes += array.size * 8
        entry = TorchValue(name, np.array(array, dtype=np.float64, copy=True))
        self.values.append(entry)
        self.by_size.setdefault(array.size, []).append(entry)

    def add_all(self, named: Iterable[tuple[str, Any]]) -> None:
        for name, value in named:
            self.add(name, value)

    def same_size(self, size: int) -> list[TorchValue]:
        return self.by_size.get(size, [])

    def match(self, value: Any, rel_tol: float) -> tuple[TorchValue, str] | None:
        """A torch value equal to ``value`` (to ``rel_tol`` of the larger scale), and how it is oriented."""
        v = np.asarray(value)
        if v.dtype.kind not in "biuf" or v.size == 0:
            return None
        v = v.astype(np.float64, copy=False)
        if not np.isfinite(v).all():
            return None
        scale_v = float(np.max(np.abs(v)))
        for entry in self.same_size(v.size):
            for how, candidate in entry.oriented(v.shape):
                if equal(v, candidate, scale_v, entry.scale, rel_tol, self._screen(v.size)):
                    return entry, how
        return None

    def _screen(self, size: int) -> np.ndarray | None:
        if size <= SAMPLED:
            return None
        if size not in self._positions:
            self._positions[size] = np.random.default_rng(size).choice(size, SAMPLE_POSITIONS, replace=False)
        return self._positions[size]


def equal(a: np.ndarray, b: np.ndarray, scale_a: float, scale_b: float, rel_tol: float,
          screen: np.ndarray | None = None) -> bool:
    """``a`` and ``b`` (same shape) agree to ``rel_tol`` of the larger of their scales."""
    allowed = rel_tol * max(scale_a, scale_b) + 1e-300
    if abs(scale_a - scale_b) > allowed:
        return False
    if screen is not None:
        picked = [x.reshape(-1)[screen] if x.flags.c_contiguous else x[np.unravel_index(screen, x.shape)]
                  for x in (a, b)]
        if not np.all(np.abs(picked[0] - picked[1]) <= allowed):
            return False
    with np.errstate(invalid="ignore"):
        return bool(np.max(np.abs(a - b), initial=0.0) <= allowed)


class Recording(TorchDispatchMode):
    """Keeps the output of every ATen operation that runs inside it (views excepted)."""

    def __init__(self, values: TorchValues):
        super().__init__()
        self.values = values

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if not getattr(func, "is_view", False):
            name = f"aten.{func.overloadpacket.__name__}"
            for tensor in _tensors(out):
                self.values.add(name, tensor)
        return out


def _tensors(out: Any) -> list[torch.Tensor]:
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _tensors(item)]
    return []
