"""The element grid of one tensor pair, as strings: what the tensor view draws, formatted lazily.

Nothing here touches Textual. A :class:`GridModel` turns the NumPy and the
torch value of one tensor into a 2-d grid (a scalar is 1 x 1, a 1-d tensor a
column, rank > 2 one 2-d slice at a time) and formats it in tiles of
``TILE_ROWS`` x ``TILE_COLS`` elements on demand: the values with
:func:`gradstep.numfmt.shortest` in their own dtype (or ``exact_hex``), the
difference with :func:`gradstep.compare.element_diffs` on that tile only. So
a 2048 x 2048 pair costs what the visible window costs.

Columns keep their decimal points aligned: each pane (NumPy, torch,
difference) has one layout (digits before the point, characters from the
point on) that only grows as tiles are formatted; the view redraws when it
does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from gradstep.compare import Tolerance, element_diffs, lower_precision
from gradstep.kernel import GREATEST, NO_TOLERANCE, scan_pair
from gradstep.numfmt import exact_hex, fmt, shortest

TILE_ROWS, TILE_COLS = 32, 8
_MAX_TILES = 512


class DiffMode(enum.Enum):
    ABS = "abs"
    REL = "rel"
    ULP = "ulp"

    def next(self) -> DiffMode:
        modes = list(DiffMode)
        return modes[(modes.index(self) + 1) % len(modes)]


LABEL = {DiffMode.ABS: "abs difference", DiffMode.REL: "rel difference", DiffMode.ULP: "ULP distance"}


@dataclass
class PaneLayout:
    """Where the decimal point sits in a pane's cells: ``whole`` characters before it, ``rest`` from it."""

    whole: int = 1
    rest: int = 0

    @property
    def width(self) -> int:
        return self.whole + self.rest

    def place(self, text: str) -> str:
        whole, rest = split_number(text)
        return whole.rjust(self.whole) + rest.ljust(self.rest)

    def grow(self, texts: list[str]) -> bool:
        parts = [split_number(t) for t in texts]
        whole = max([self.whole, *(len(w) for w, _ in parts)])
        rest = max([self.rest, *(len(r) for _, r in parts)])
        grown = (whole, rest) != (self.whole, self.rest)
        self.whole, self.rest = whole, rest
        return grown


def split_number(text: str) -> tuple[str, str]:
    """``"-12.5e-07"`` -> ``("-12", ".5e-07")``: the part before the decimal point and the rest."""
    for sep in (".", "e"):
        if sep in text and not text.startswith("0x"):
            i = text.index(sep)
            return text[:i], text[i:]
    return text, ""


@dataclass
class Cell:
    """One element of the grid as the view draws it."""

    numpy: str | None  # None: this side has no element here
    torch: str | None
    diff: str | None  # None: not comparable
    bad: bool = False
    nonfinite: bool = False


@dataclass
class Tile:
    cells: list[list[Cell]]


@dataclass(frozen=True)
class ElementInfo:
    """The element under the cursor, every number in full."""

    index: str
    numpy: str | None
    torch: str | None
    numpy_hex: str | None
    torch_hex: str | None
    numpy_dtype: str | None
    torch_dtype: str | None
    abs: str | None = None
    rel: str | None = None
    ulp: str | None = None
    bad: bool = False
    tolerance: str = ""


@dataclass(eq=False)  # identity: it holds arrays
class GridModel:
    """One tensor pair as a lazily formatted grid of strings."""

    key: str
    numpy: np.ndarray | None
    torch: np.ndarray | None
    tolerance: Tolerance
    worst_index: tuple[int, ...] | None = None
    hex_bits: bool = False
    mode: DiffMode = DiffMode.ABS
    slice_index: int = 0
    numpy_layout: PaneLayout = field(default_factory=PaneLayout)
    torch_layout: PaneLayout = field(default_factory=PaneLayout)
    diff_layout: PaneLayout = field(default_factory=PaneLayout)
    generation: int = 0
    keep_slice: int | None = None  # the slice to show (rank > 2); default: the worst element's
    worst_by: str = "tolerance"  # "tolerance": most beyond its tolerance (the status's worst); "abs": largest |Δ|

    def __post_init__(self) -> None:
        a, b = self.numpy, self.torch
        if a is not None and b is not None and np.shape(a) != np.shape(b) and np.size(a) == np.size(b):
            self.torch = np.asarray(b).reshape(np.shape(a))  # same elements, another shape: as compare does
        self.comparable = self.numpy is not None and self.torch is not None and np.size(self.numpy) == np.size(
            self.torch)
        present = self.numpy if self.numpy is not None else self.torch
        self.shape: tuple[int, ...] = tuple(np.shape(present)) if present is not None else ()
        self.lead_shape = self.shape[:-2] if len(self.shape) > 2 else ()
        self.slices = int(np.prod(self.lead_shape)) if self.lead_shape else 1
        self._tiles: dict[tuple, Tile] = {}
        if self.keep_slice is not None and self.lead_shape:
            self.slice_index = self.keep_slice % self.slices
        elif self.worst_index is not None and self.lead_shape:
            self.slice_index = int(np.ravel_multi_index(self.worst_index[:-2], self.lead_shape))
        self._reset_views()

    # ---- shape -------------------------------------------------------------
    def _reset_views(self) -> None:
        self._va = self._view(self.numpy)
        self._vb = self._view(self.torch)
        views = [v for v in (self._va, self._vb) if v is not None]
        self.rows = max((v.shape[0] for v in views), default=0)
        self.cols = max((v.shape[1] for v in views), default=0)
        self._tiles.clear()
        self.numpy_layout, self.torch_layout, self.diff_layout = PaneLayout(), PaneLayout(), PaneLayout()
        self._prime_layout()
        self.generation += 1

    def _view(self, arr: np.ndarray | None) -> np.ndarray | None:
        if arr is None:
            return None
        arr = np.asarray(arr)
        if arr.ndim == 0:
            return arr.reshape(1, 1)
        if arr.ndim == 1:
            return arr.reshape(-1, 1)
        if arr.ndim == 2:
            return arr
        if arr.shape[:-2] != self.lead_shape:
            return arr.reshape(-1, arr.shape[-1])  # a differently shaped side: show it flat
        return arr[np.unravel_index(self.slice_index, self.lead_shape)]

    @property
    def layouts(self) -> tuple[PaneLayout, PaneLayout, PaneLayout]:
        """The NumPy, torch and difference panes' layouts."""
        return self.numpy_layout, self.torch_layout, self.diff_layout

    @property
    def rank(self) -> int:
        return len(self.shape)

    def slice_label(self) -> str:
        """``[1, 2, :, :] 6/24`` for rank > 2, else ``""``."""
        if not self.lead_shape:
            return ""
        lead = np.unravel_index(self.slice_index, self.lead_shape)
        head = ", ".join(str(int(i)) for i in lead)
        return f"[{head}, :, :] {self.slice_index + 1}/{self.slices}"

    def set_slice(self, index: int) -> None:
        self.slice_index = index % self.slices
        self._reset_views()

    def index_of(self, row: int, col: int) -> tuple[int, ...]:
        """The full index in the NumPy side's shape of grid cell (row, col)."""
        if self.rank == 0:
            return ()
        if self.rank == 1:
            return (row,)
        lead = tuple(int(i) for i in np.unravel_index(self.slice_index, self.lead_shape)) if self.lead_shape else ()
        return (*lead, row, col)

    def largest_abs_index(self) -> tuple[int, ...] | None:
        """The element with the largest absolute difference (what the tensor list's Δ is), NaN against a
        number counted as the largest; None when the sides do not pair up."""
        if not self.comparable or not self.shape:
            return None if not self.comparable else ()
        a = np.asarray(self.numpy)
        at = scan_pair(a, np.asarray(self.torch), 0.0, NO_TOLERANCE)[GREATEST]  # the kernel's, as the list's Δ
        return tuple(int(i) for i in np.unravel_index(int(at), a.shape))

    def worst_cell(self) -> tuple[int, int]:
        w = self.largest_abs_index() if self.worst_by == "abs" else self.worst_index
        if not w:
            return 0, 0
        if len(w) == 1:
            return w[0], 0
        return w[-2], w[-1]

    # ---- switches ------------------------------------------------------------
    def set_hex(self, hex_bits: bool) -> None:
        if hex_bits != self.hex_bits:
            self.hex_bits = hex_bits
            self._reset_views()

    def set_mode(self, mode: DiffMode) -> None:
        if mode != self.mode:
            self.mode = mode
            self._reset_views()

    # ---- cells -----------------------------------------------------------------
    def cell(self, row: int, col: int) -> Cell:
        tile = self.tile(row // TILE_ROWS, col // TILE_COLS)
        return tile.cells[row % TILE_ROWS][col % TILE_COLS]

    def tile(self, tr: int, tc: int) -> Tile:
        key = (tr, tc)
        tile = self._tiles.get(key)
        if tile is None:
            if len(self._tiles) >= _MAX_TILES:
                self._tiles.pop(next(iter(self._tiles)))
            tile = self._tiles[key] = self._format_tile(tr, tc)
        return tile

    def _format_tile(self, tr: int, tc: int) -> Tile:
        r0, c0 = tr * TILE_ROWS, tc * TILE_COLS
        r1, c1 = min(r0 + TILE_ROWS, self.rows), min(c0 + TILE_COLS, self.cols)
        ta = _format_block(self._va, r0, r1, c0, c1, self.hex_bits)
        tb = _format_block(self._vb, r0, r1, c0, c1, self.hex_bits)
        td: list[list[str | None]] = [[None] * (c1 - c0) for _ in range(r1 - r0)]
        bad = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        nonfinite = np.zeros_like(bad)
        if self.comparable:
            a, b = self._va[r0:r1, c0:c1], self._vb[r0:r1, c0:c1]
            d = element_diffs(a, b, self.tolerance)
            if self.mode == DiffMode.ULP:
                td = [[_count(v) for v in row] for row in exact_ulps(a, b)]
            else:
                values = d.abs if self.mode == DiffMode.ABS else d.rel
                td = [[shortest(float(v)) for v in row] for row in values]
            bad = d.bad
            with np.errstate(invalid="ignore"):
                nonfinite = bad & (np.isfinite(np.asarray(a, dtype=np.float64)) != np.isfinite(
                    np.asarray(b, dtype=np.float64)))
        grown = self.numpy_layout.grow([t for row in ta for t in row if t is not None])
        grown |= self.torch_layout.grow([t for row in tb for t in row if t is not None])
        grown |= self.diff_layout.grow([t for row in td for t in row if t is not None])
        if grown:
            self.generation += 1
        cells = [
            [Cell(ta[i][j], tb[i][j], td[i][j], bool(bad[i, j]), bool(nonfinite[i, j])) for j in range(c1 - c0)]
            for i in range(r1 - r0)
        ]
        # pad to a full tile so (row % TILE_ROWS, col % TILE_COLS) always indexes
        for row in cells:
            row.extend(Cell(None, None, None) for _ in range(TILE_COLS - len(row)))
        cells.extend([Cell(None, None, None)] * TILE_COLS for _ in range(TILE_ROWS - len(cells)))
        return Tile(cells)

    def _prime_layout(self) -> None:
        """Size the layouts from the first tile and the worst element's, so most tensors never re-layout."""
        if not self.rows or not self.cols:
            return
        self.tile(0, 0)
        wr, wc = self.worst_cell()
        if wr < self.rows and wc < self.cols:
            self.tile(wr // TILE_ROWS, wc // TILE_COLS)

    # ---- the element under the cursor --------------------------------------
    def element(self, row: int, col: int) -> ElementInfo:
        index = self.index_of(row, col)
        label = f"{self.key}[{', '.join(map(str, index))}]" if index else self.key
        a = _at(self._va, row, col)
        b = _at(self._vb, row, col)
        tol = f"rtol {shortest(self.tolerance.rtol)}, atol {shortest(self.tolerance.atol)}"
        info = dict(
            index=label,
            numpy=None if a is None else shortest(a),
            torch=None if b is None else shortest(b),
            numpy_hex=None if a is None else exact_hex(a),
            torch_hex=None if b is None else exact_hex(b),
            numpy_dtype=None if a is None else a.dtype.name,
            torch_dtype=None if b is None else b.dtype.name,
            tolerance=tol,
        )
        if self.comparable and a is not None and b is not None:
            d = element_diffs(np.asarray([a]), np.asarray([b]), self.tolerance)
            ulps = exact_ulps(np.asarray([a]), np.asarray([b]))[0]
            info.update(abs=shortest(float(d.abs[0])), rel=shortest(float(d.rel[0])), ulp=_count(ulps),
                        bad=bool(d.bad[0]))
        return ElementInfo(**info)

    def value_text(self, row: int, col: int, side: str) -> str | None:
        """One side's element at full precision (hex when hex is on): what copying gives."""
        value = _at(self._va if side == "numpy" else self._vb, row, col)
        return None if value is None else fmt(value, hex_bits=self.hex_bits)


def exact_ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ULPs between ``a`` and ``b`` in the lower precision of the two, exactly (uint64; NaN mismatch: -1).

    ``compare.ulp_distance`` subtracts after converting the ordered integers to
    float64, which drops the low bits of float64 distances (6 ULPs read as 0);
    this subtracts in 64-bit integers, where the distance always fits.
    """
    dt = lower_precision(np.asarray(a).dtype, np.asarray(b).dtype)
    ia, ib = _ordered(np.asarray(a, dtype=dt)), _ordered(np.asarray(b, dtype=dt))
    ua, ub = ia.view(np.uint64), ib.view(np.uint64)
    dist = np.where(ia >= ib, ua - ub, ub - ua)
    nan_a, nan_b = np.isnan(np.asarray(a, dtype=np.float64)), np.isnan(np.asarray(b, dtype=np.float64))
    dist[nan_a & nan_b] = 0
    dist[nan_a ^ nan_b] = np.iinfo(np.uint64).max
    return dist


def _ordered(x: np.ndarray) -> np.ndarray:
    """Integers in the floats' order (+0 and -0 both 0), as int64."""
    bits = x.view({2: np.int16, 4: np.int32, 8: np.int64}[x.dtype.itemsize]).astype(np.int64)
    magnitude = bits & np.int64((1 << (x.dtype.itemsize * 8 - 1)) - 1)
    return np.where(bits < 0, -magnitude, magnitude)


def _count(ulps: np.uint64) -> str:
    return "inf" if ulps == np.iinfo(np.uint64).max else str(int(ulps))


def _at(view: np.ndarray | None, row: int, col: int) -> np.generic | None:
    if view is None or row >= view.shape[0] or col >= view.shape[1]:
        return None
    return view[row, col]


def _format_block(view: np.ndarray | None, r0: int, r1: int, c0: int, c1: int, hex_bits: bool) -> list[list]:
    out: list[list[str | None]] = []
    for r in range(r0, r1):
        if view is None or r >= view.shape[0]:
            out.append([None] * (c1 - c0))
            continue
        row = view[r, c0:min(c1, view.shape[1])]
        dtype = view.dtype
        texts: list[str | None] = [fmt(v, dtype, hex_bits=hex_bits) for v in row]
        texts.extend([None] * (c1 - c0 - len(texts)))
        out.append(texts)
    return out
