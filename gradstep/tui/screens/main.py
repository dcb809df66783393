"""The main screen: navigator, tensor grid, element detail, status line, loss plot, diagnosis, footer.

Presentation mode (``present``, ``--present``) is a class on the screen: the
stylesheet hides the status line, the navigator, the detail and the plot and
shows a heading with the step in big digits; like the compact layout, one
pane fills the body (``t``, ``p``, ``a`` switch it). Toggling it changes
classes only, so nothing shown is lost.

It shows frames (``show_frame``) and diagnoses (``show_diagnosis``) and owns
the view-only moves: which tensor, which element, hex or decimal, which
difference, which slice, which pane in the compact layout. Moves that need the
engine are the app's.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Static

from gradstep import keys
from gradstep.tui.bindings import DIAGNOSIS_BINDINGS, ENGINE_BINDINGS, PATCH_BINDINGS, SHOW_BINDINGS, VIEW_BINDINGS
from gradstep.tui.findings import Diagnosis, evidence_target
from gradstep.tui.frame import INITIAL, Frame, TensorEntry
from gradstep.tui.grid_model import DiffMode, GridModel
from gradstep.tui.presentation import present_view
from gradstep.tui.presenter import entry_view, status_view, tensor_title
from gradstep.tui.screens.find import FindScreen
from gradstep.tui.widgets import (
    DiagnosisPane,
    ElementDetail,
    ErrorBanner,
    KeyFooter,
    LossPlot,
    PresentHeading,
    RunBar,
    StatusBar,
    TensorGrid,
    TensorNavigator,
)

COMPACT_WIDTH, COMPACT_HEIGHT = 120, 34
WORST_MEANS = {"tolerance": "most beyond tolerance", "abs": "largest |Δ|"}


class MainScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [*ENGINE_BINDINGS, *PATCH_BINDINGS, *DIAGNOSIS_BINDINGS, *SHOW_BINDINGS,
                                             *VIEW_BINDINGS]

    def __init__(self, hex_bits: bool = False, present: bool = False) -> None:
        super().__init__(classes="-present" if present else None)
        self.frame: Frame | None = None
        self.selected: str | None = None
        self.hex_bits = hex_bits
        self.mode = DiffMode.ABS
        self.model: GridModel | None = None
        self.worst_by = "tolerance"  # W switches: "tolerance" (most beyond it) or "abs" (largest |Δ|)
        self.pane = "grid"  # in the compact layout: which of grid / tensors / plot / diagnosis fills the body
        self._detail_shown: tuple | None = None

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield ErrorBanner(id="error")
        yield PresentHeading(id="present")
        with Horizontal(id="body"):
            yield TensorNavigator(id="navigator")
            with Vertical(id="right"):
                with Vertical(id="tensor-pane"):
                    yield Static(id="tensor-title")
                    yield TensorGrid(id="grid")
                    yield ElementDetail(id="detail")
                with Horizontal(id="lower"):
                    yield LossPlot(id="plot")
                    yield DiagnosisPane(id="diagnosis")
        yield RunBar(id="runbar")
        yield KeyFooter(id="footer")

    def on_mount(self) -> None:
        self.query_one(TensorGrid).focus()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw_marks())
        self._layout(self.app.size.width, self.app.size.height)
        self._space_grid()  # (_layout leaves the widgets alone until the screen is mounted)

    def on_resize(self, event) -> None:
        self._layout(event.size.width, event.size.height)

    def _layout(self, width: int, height: int) -> None:
        compact = width < COMPACT_WIDTH or height < COMPACT_HEIGHT
        changed = compact != self.compact
        self.set_class(compact, "-compact")
        if self.is_mounted:
            self._space_grid()
            if changed and self.frame is not None:
                self.query_one(StatusBar).show_status(status_view(self.frame, self.hex_bits), compact)
        self.set_class(width >= 180 and height >= 50, "-large")

    @property
    def compact(self) -> bool:
        return self.has_class("-compact")

    @property
    def presenting(self) -> bool:
        return self.has_class("-present")

    @property
    def single_pane(self) -> bool:
        """One pane fills the body (grid, tensor list, plot or diagnosis): compact, or presenting."""
        return self.compact or self.presenting

    # ---- showing -------------------------------------------------------------
    def show_frame(self, frame: Frame, error: str | None) -> None:
        previous = self.frame
        self.frame = frame
        self.query_one(StatusBar).show_status(status_view(frame, self.hex_bits), self.compact)
        self.query_one(ErrorBanner).show_error(error)
        names = [e.key for e in frame.entries]
        key = _opened(previous, frame, self.selected, names)
        if key not in names:
            key = names[0] if names else None
        navigator = self.query_one(TensorNavigator)
        navigator.show_entries([entry_view(e) for e in frame.entries], key)
        navigator.border_title = "initial weights" if frame.step < 0 else f"step {frame.step}"
        keep_cursor = previous is not None and key == self.selected and frame.focus_key is None
        self._select(key, keep_cursor=keep_cursor)
        if not self.single_pane or self.pane == "plot":
            self.query_one(LossPlot).show_losses(frame.losses, frame.step)

    def _redraw_marks(self) -> None:
        """The marks' colours follow the theme; the symbols stay."""
        if self.frame is not None:
            self.query_one(TensorNavigator).show_entries([entry_view(e) for e in self.frame.entries], self.selected)
            self._detail_shown = None
            self._show_detail()
            self.query_one(LossPlot).show_losses(self.frame.losses, self.frame.step)  # its lines' colours
            status = self.query_one(StatusBar)
            status._shown = None  # its colours changed, not its words
            status.show_status(status_view(self.frame, self.hex_bits), self.compact)
            self._show_present()

    def _show_present(self) -> None:
        """The presentation heading, drawn only while presenting (stepping costs nothing otherwise)."""
        if not self.presenting or self.frame is None:
            return
        entry = self.frame.entry(self.selected) if self.selected else None
        view = present_view(self.frame, entry, self.query_one(DiagnosisPane).diagnosis, self.hex_bits)
        self.query_one(PresentHeading).show_view(view)

    def _select(self, key: str | None, keep_cursor: bool = False) -> None:
        """Open tensor ``key`` in the grid; the cursor on its worst element unless kept."""
        grid = self.query_one(TensorGrid)
        entry = self.frame.entry(key) if (self.frame and key) else None
        old = self.model
        self.selected = key
        if entry is None:
            self.model = None
            grid.show_model(None)
            self._show_detail()
            self.query_one("#tensor-title", Static).update("", layout=False)
            self._show_present()
            return
        if not entry.recorded:  # a saved session's summary row: no elements to draw
            self.model = None
            grid.show_model(None)
            self._show_detail()
            self._title(entry)
            self.query_one(TensorNavigator).select_key(key)
            self._show_present()
            return
        keep = keep_cursor and old is not None and old.key == key and old.shape == entry.shape
        self.model = GridModel(entry.key, entry.numpy, entry.torch, entry.tolerance, entry.worst_index,
                               hex_bits=self.hex_bits, mode=self.mode, keep_slice=old.slice_index if keep else None,
                               worst_by=self.worst_by)
        grid.show_model(self.model, cursor=grid.cursor if keep else None)
        self._show_detail()
        self._title(entry)
        self.query_one(TensorNavigator).select_key(key)
        self._show_present()

    def _title(self, entry: TensorEntry) -> None:
        label = self.model.slice_label() if self.model else ""
        title = tensor_title(entry, label)
        if self.model and self.model.comparable:  # what "worst" means, beside the name: a narrow title cuts the end
            head, _, rest = title.partition(" · ")
            title = f"{head} · worst: {WORST_MEANS[self.worst_by]}" + (f" · {rest}" if rest else "")
        # Text, not markup: a tensor name (from a session file someone sent, too) is never parsed as markup.
        self.query_one("#tensor-title", Static).update(Text(title), layout=False)

    @on(TensorGrid.CursorMoved)
    def _cursor_moved(self, event: TensorGrid.CursorMoved) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        """The element under the cursor in full (called directly too, so it never lags the grid)."""
        grid = self.query_one(TensorGrid)
        shown = (id(self.model), self.model.generation if self.model else 0, grid.cursor, self.mode)
        if shown == self._detail_shown:
            return
        self._detail_shown = shown
        detail = self.query_one(ElementDetail)
        if self.model is None or not self.model.rows:
            entry = self.frame.entry(self.selected) if (self.frame and self.selected) else None
            detail.show_element(None, self.mode, "" if entry is None else entry_view(entry).note)
            return
        note = "" if self.model.comparable else entry_view(self.frame.entry(self.selected)).note
        detail.show_element(self.model.element(*grid.cursor), self.mode, note)

    @on(TensorNavigator.Highlighted)
    def _highlighted(self, event: TensorNavigator.Highlighted) -> None:
        if event.key != self.selected:
            self._select(event.key)

    @on(TensorNavigator.Opened)
    def _chosen(self, event: TensorNavigator.Opened) -> None:
        if event.key != self.selected:
            self._select(event.key)
        if self.single_pane:
            self.action_pane("grid")
        self.query_one(TensorGrid).focus()

    # ---- view-only moves ---------------------------------------------------
    def _keys(self, diverged: bool = False) -> list[str]:
        if self.frame is None:
            return []
        order = self.query_one(TensorNavigator).keys_in_order
        entries = {e.key: e for e in self.frame.entries}
        return [k for k in order if not diverged or entries[k].out_of_tolerance]

    def action_tensor(self, step: int) -> None:
        self._cycle(self._keys(), step)

    def action_diverged(self, step: int) -> None:
        candidates = self._keys(diverged=True)
        if not candidates:
            self.notify("no tensor is out of tolerance at this step")
            return
        self._cycle(candidates, step)

    def _cycle(self, candidates: list[str], step: int) -> None:
        """Select the next (step 1) or previous (step -1) of ``candidates`` after the selected tensor, wrapping."""
        if not candidates:
            return
        order = self._keys()
        here = order.index(self.selected) if self.selected in order else -1
        if step > 0:
            after = [k for k in candidates if order.index(k) > here]
            self._select(after[0] if after else candidates[0])
        else:
            before = [k for k in candidates if order.index(k) < here]
            self._select(before[-1] if before else candidates[-1])

    def action_find(self) -> None:
        def found(key: str | None) -> None:
            if key:
                self._select(key)
                self.query_one(TensorGrid).focus()

        self.app.push_screen(FindScreen(self._keys()), found)

    def action_toggle_hex(self) -> None:
        self.hex_bits = not self.hex_bits
        if self.model is not None:
            self.model.set_hex(self.hex_bits)
            self.query_one(TensorGrid).model_changed()
        if self.frame is not None:
            self.query_one(StatusBar).show_status(status_view(self.frame, self.hex_bits), self.compact)
            self._show_present()

    def action_worst_by(self) -> None:
        """Switch what "worst" means (most beyond tolerance / largest |Δ|) and put the cursor on that element."""
        self.worst_by = "abs" if self.worst_by == "tolerance" else "tolerance"
        if self.model is not None:
            self.model.worst_by = self.worst_by
            self.query_one(TensorGrid).action_worst()
            entry = self.frame.entry(self.selected) if self.frame and self.selected else None
            if entry is not None:
                self._title(entry)
        self.notify(f"worst element: {WORST_MEANS[self.worst_by]}", timeout=3)

    def action_diff_mode(self) -> None:
        self.mode = self.mode.next()
        if self.model is not None:
            self.model.set_mode(self.mode)
            self.query_one(TensorGrid).model_changed()

    def action_copy(self, side: str) -> None:
        grid = self.query_one(TensorGrid)
        text = self.model.value_text(*grid.cursor, side) if self.model is not None else None
        if text is None:
            self.notify(f"no {side} element here", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        self.notify(f"copied {side} {text}")

    def action_slice(self, step: int) -> None:
        if self.model is None or self.model.slices <= 1:
            self.notify("slices are for tensors of rank 3 and more")
            return
        self.model.set_slice(self.model.slice_index + step)
        self.query_one(TensorGrid).model_changed()
        entry = self.frame.entry(self.selected) if self.frame and self.selected else None
        if entry is not None:
            self._title(entry)

    def action_pane(self, pane: str) -> None:
        """Compact layout or presenting: switch the body between grid, tensor list, plot and diagnosis.

        Wide: focus the list or the findings, show or hide the plot.
        """
        if self.single_pane:
            self._compact_pane("grid" if self.pane == pane else pane)
            return
        if pane == "tensors":
            navigator = self.query_one(TensorNavigator)
            (self.query_one(TensorGrid) if navigator.has_focus else navigator).focus()
        elif pane == "diagnosis":
            diagnosis = self.query_one(DiagnosisPane)
            if diagnosis.has_findings_focus:
                self.query_one(TensorGrid).focus()
            else:
                self.add_class("-diagnosis")
                diagnosis.focus_findings()
        else:
            self.toggle_class("-hide-plot")

    def action_present(self) -> None:
        """Presentation mode on or off; the pane, the tensor and the cursor stay as they are."""
        self.toggle_class("-present")
        self._space_grid()
        if self.single_pane:
            self._compact_pane(self.pane)  # the focus goes to the pane shown: the tensor list may be hidden now
        elif self.pane == "diagnosis":
            self.add_class("-diagnosis")  # back in the wide layout, the findings keep the focus beside the plot
        if self.frame is not None:
            self.query_one(LossPlot).show_losses(self.frame.losses, self.frame.step)
        self._show_present()

    def _space_grid(self) -> None:
        """Wider cells when presenting, unless the terminal is compact: there every column counts."""
        self.query_one(TensorGrid).set_spacious(self.presenting and not self.compact)

    def _compact_pane(self, pane: str) -> None:
        self.pane = pane
        for name in ("tensors", "plot", "diagnosis"):
            self.set_class(self.pane == name, f"-pane-{name}")
        if self.pane == "plot" and self.frame is not None:
            self.query_one(LossPlot).show_losses(self.frame.losses, self.frame.step)
        if self.pane == "tensors":
            self.query_one(TensorNavigator).focus()
        elif self.pane == "diagnosis":
            self.query_one(DiagnosisPane).focus_findings()
        else:
            self.query_one(TensorGrid).focus()

    # ---- diagnosis -----------------------------------------------------------------
    def show_diagnosis(self, diagnosis: Diagnosis | None, pending: int | None, diagnose_key: str) -> None:
        """The findings (or that a step is being diagnosed); in the wide layout the pane appears with them."""
        if diagnosis is not None or pending is not None:
            self.add_class("-diagnosis")
        self.query_one(DiagnosisPane).show_diagnosis(diagnosis, pending, diagnose_key)
        self._show_present()

    def action_diagnosis(self) -> None:
        """Diagnose the step shown (unless it is the one diagnosed) and show the findings; again: back."""
        pane = self.query_one(DiagnosisPane)
        step = self.frame.step if self.frame is not None else INITIAL
        showing = pane.has_findings_focus or (self.single_pane and self.pane == "diagnosis")
        diagnosed = (pane.diagnosis is not None and pane.diagnosis.step == step) or pane.pending == step
        if showing and diagnosed:
            self.action_pane("diagnosis")  # back to the tensor
            return
        if not diagnosed:
            self.app.diagnose_step()  # type: ignore[attr-defined]
        if not showing:
            self.action_pane("diagnosis")

    @on(DiagnosisPane.EvidenceWanted)
    def _evidence(self, event: DiagnosisPane.EvidenceWanted) -> None:
        step, tensor = evidence_target(event.finding, event.step)
        if self.single_pane:
            self._compact_pane("grid")
        else:
            self.query_one(TensorGrid).focus()
        self.app.show_evidence(step, tensor)  # type: ignore[attr-defined]


def _opened(previous: Frame | None, frame: Frame, selected: str | None, names: list[str]) -> str | None:
    """The tensor to open: the one a run stopped at, else a first divergence this step just found, else the
    one watched. So the tensor the status line names is the one on screen."""
    if frame.focus_key in names:
        return frame.focus_key
    divergence = frame.first_divergence
    new = previous is None or previous.first_divergence != divergence or previous.generation != frame.generation
    if divergence is not None and new and divergence[0] == frame.step and divergence[1] in names:
        return divergence[1]
    return _watched(previous, frame, selected, names)


def _watched(previous: Frame | None, frame: Frame, key: str | None, names: list[str]) -> str | None:
    """Watching a weight from the start (``before w``), the first step shows what the update made of it."""
    first_step = previous is not None and previous.step == INITIAL and frame.step != INITIAL
    if first_step and key is not None and key.startswith("before "):
        after = keys.after(keys.base_name(key))
        if after in names:
            return after
    return key
