"""The patch editor: one of the scenario's formulas in a Python code editor, applied with a replay.

The list on the left holds every formula the scenario has (``patch.targets_for``: a
side's step function, or its pieces), marked
``●`` when a patch is in force and ``✎`` when it holds text typed but not
applied. Applying asks the app to validate and replay on the engine worker;
the result comes back through :meth:`PatchEditor.show_outcome`: applied, the
editor closes on the new comparison; refused, the error and the patch's line
are shown and the text stays. Escape closes without losing the text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.theme import Theme
from textual.timer import Timer
from textual.widgets import Footer, OptionList, Static, TextArea
from textual.widgets.option_list import Option
from textual.widgets.text_area import Selection

from gradstep.patch import TARGETS
from gradstep.tui.bindings import EDITOR_BINDINGS
from gradstep.tui.patching import PatchOutcome, PatchSession
from gradstep.tui.widgets import RunBar

if TYPE_CHECKING:
    from gradstep.tui.app import GradstepApp

COMPACT_WIDTH = 100
DRAFT_DELAY = 0.4  # seconds after the last key before the text typed is written to the drafts file


class PatchText(TextArea):
    """The code, with two differences from a plain ``TextArea``.

    Enter keeps the line's indentation, one level more after a ``:``, as code editors do.

    Keys are handled in the order they arrive. Textual inserts a typed character or a newline as soon as the
    editor reads the key, but runs a binding (an arrow, End) only after the key has bubbled up to the app; so
    keys that arrive together, as over SSH (``Down Down End Enter`` in one read), put the newline first. The
    editor runs its own bindings the moment it reads their key instead.
    """

    async def _on_key(self, event: events.Key) -> None:
        if self.read_only:
            await super()._on_key(event)
            return
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self._new_line()
            return
        if await self._run_own_binding(event.key):
            event.stop()
            event.prevent_default()
            return
        await super()._on_key(event)

    def _new_line(self) -> None:
        row, column = self.selection.start
        before = self.document.get_line(row)[:column]
        indent = before[:len(before) - len(before.lstrip())]
        if before.rstrip().endswith(":"):
            indent += " " * self.indent_width
        self.replace("\n" + indent, *self.selection)

    async def _run_own_binding(self, key: str) -> bool:
        """Run this editor's binding for ``key`` now (the user's keymap applied); False when it has none."""
        bindings = self._bindings.copy()
        if self.app._keymap:  # (Textual's own binding chain applies the keymap the same way)
            bindings.apply_keymap(self.app._keymap)
        for binding in bindings.key_to_bindings.get(key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                return True
        return False


class PatchEditor(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = EDITOR_BINDINGS

    def __init__(self, session: PatchSession, target: str, scenario: str, row: int | None = None) -> None:
        """``row``: the line to open on (from 0), the one the diagnosis points at."""
        super().__init__()
        self.session = session
        self.target = target
        self.scenario = scenario
        self.error_line: int | None = None
        self.row = row
        self._draft_timer: Timer | None = None

    @property
    def gradstep(self) -> GradstepApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="editor-title")
        with Horizontal(id="editor-body"):
            yield OptionList(*self._options(), id="patch-targets")
            with Vertical(id="editor-main"):
                yield PatchText.code_editor(self.session.source(self.target), language="python", id="patch-text")
                yield Static(id="patch-message")
        yield RunBar(id="editor-runbar")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self._layout(self.app.size.width)
        self._follow_theme(self.app.current_theme)
        self.app.theme_changed_signal.subscribe(self, self._follow_theme)
        targets = self.query_one("#patch-targets", OptionList)
        targets.highlighted = self.session.targets.index(self.target)
        self._title()
        self.hint()
        self.text_area.focus()
        if self.row is not None and 0 <= self.row < self.text_area.document.line_count:
            self.text_area.move_cursor((self.row, 0), center=True)

    def on_resize(self, event) -> None:
        self._layout(event.size.width)

    def _follow_theme(self, theme: Theme) -> None:
        """Highlighting readable on the app's theme: monokai's pale tokens vanish on a light background."""
        self.text_area.theme = "monokai" if theme.dark else "github_light"

    def _layout(self, width: int) -> None:
        self.set_class(width < COMPACT_WIDTH, "-compact")

    @property
    def text_area(self) -> TextArea:
        return self.query_one("#patch-text", TextArea)

    # ---- what is shown -------------------------------------------------------------
    def _options(self) -> list[Option]:
        in_force = self.session.in_force()
        options = []
        for target in self.session.targets:
            what = TARGETS[target]
            mark = "●" if target in in_force else "✎" if target in self.session.drafts else " "
            options.append(Option(f"{mark} {target}\n   {what}", id=target))
        return options

    def _refresh_options(self) -> None:
        targets = self.query_one("#patch-targets", OptionList)
        for option in self._options():
            targets.replace_option_prompt(option.id or "", option.prompt)

    def _title(self) -> None:
        in_force = ", ".join(self.session.in_force()) or "none"
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"Patch {self.target}", style="bold")
        text.append(f" · in force: {in_force} · {TARGETS[self.target]} · {self.scenario}")
        self.query_one("#editor-title", Static).update(text)

    def hint(self) -> None:
        """What the keys do, where patches go, and that they are code."""
        keys = self.gradstep.key_names
        text = Text()
        text.append(f"{keys('patch_apply')}", style="bold")
        text.append(" applies: checked on the step's inputs, then replayed from step 0 to the step shown. ")
        text.append(f"{keys('patch_close')}", style="bold")
        text.append(" closes, keeping the text. ")
        text.append(f"{keys('patch_choose')}", style="bold")
        text.append(" picks another formula.\n")
        text.append(f"Applied patches are saved to {self.session.patch_file()}", style="dim")
        text.append(" · a patch is Python and runs with your rights", style="dim")
        self._message(text)

    def _message(self, text: Text | str, error: bool = False) -> None:
        message = self.query_one("#patch-message", Static)
        message.set_class(error, "-error")
        message.update(text)

    # ---- the text typed, kept on disk as it is typed ----------------------------------
    @on(TextArea.Changed, "#patch-text")
    def _typed(self) -> None:
        if self._draft_timer is not None:
            self._draft_timer.stop()
        self._draft_timer = self.set_timer(DRAFT_DELAY, self.keep_draft)

    def keep_draft(self) -> None:
        """The editor's text as the formula's draft, on disk: a crash or a kill loses at most the last keys."""
        self._draft_timer = None
        self.session.keep_draft(self.target, self.text_area.text)
        self._refresh_options()
        error = self.session.save_drafts()
        if error is not None:
            self._message(error, error=True)

    def on_unmount(self) -> None:
        if self._draft_timer is not None:
            self._draft_timer.stop()
        try:
            self.session.keep_draft(self.target, self.text_area.text)
        except NoMatches:  # already taken down with the app: the last timer kept the text
            return
        self.session.save_drafts()

    # ---- keys ------------------------------------------------------------------------
    def action_in_order(self, action: str) -> None:
        """Run ``action`` once the editor has read the keys that came before its key.

        The editor's keys are priority bindings, run by the app the moment it reads them, while the keys before
        (typed text, a paste) may still wait in the editor's queue: text typed and ``ctrl+r`` in one burst would
        apply the text as it was before. Queued behind them, the action sees what was typed.
        """
        self.text_area.call_later(self.run_action, action)

    def action_apply(self) -> None:
        text = self.text_area.text
        self.session.keep_draft(self.target, text)
        self._refresh_options()
        if self.gradstep.running:
            self._message("A replay is in flight: wait for it, or cancel it first (escape).", error=True)
            return
        if text.strip() == self.session.applied_source(self.target).strip():
            self._message(f"Nothing to apply: this is the {self.target} in force. Change it first.", error=True)
            return
        self.error_line = None
        started = self.gradstep.apply_patch(self.target, text)
        self._message(f"checking the patch on the step's inputs… ({self.gradstep.key_names('patch_close')} stops "
                      "it)" if started else "the engine is busy: the patch is applied as soon as it is free")

    def show_progress(self, done: int, total: int) -> None:
        """A replay under way: the message says how far it is, not what it did first."""
        self._message(f"the patch passed its check; replaying: step {done} of {total}…")

    def action_close(self) -> None:
        if self.gradstep.running:
            self.gradstep.action_interrupt()
            self._message("stopping the replay (inside the patch if it does not return): the previous run and "
                          "the text stay")
            return
        if self.has_class("-choosing"):
            self._choosing(False)
            return
        self.keep_draft()
        self.dismiss()

    def action_choose(self) -> None:
        if self.has_class("-choosing") or self.query_one("#patch-targets").has_focus:
            self._choosing(False)
        else:
            self._choosing(True)

    def _choosing(self, on: bool) -> None:
        self.set_class(on, "-choosing")
        (self.query_one("#patch-targets") if on else self.text_area).focus()

    def action_revert(self) -> None:
        self.session.drafts.pop(self.target, None)
        self.text_area.load_text(self.session.applied_source(self.target))
        self.keep_draft()
        self.error_line = None
        self.hint()

    @on(OptionList.OptionSelected, "#patch-targets")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.open_target(event.option.id or self.target)

    def open_target(self, target: str) -> None:
        """Edit ``target``: the text of the one left is kept as its draft."""
        if target != self.target:
            self.keep_draft()
            self.target = target
            self.text_area.load_text(self.session.source(target))
            self._refresh_options()
            self._title()
            self.error_line = None
            self.hint()
        self.query_one("#patch-targets", OptionList).highlighted = self.session.targets.index(target)
        self._choosing(False)

    # ---- results ---------------------------------------------------------------------
    def show_outcome(self, outcome: PatchOutcome) -> None:
        """A refused patch marks its line and keeps the text; an applied one closes the editor."""
        self._refresh_options()
        self._title()
        if outcome.changed:
            if self.is_current:
                self.dismiss()
            return
        if outcome.kind in ("refused", "stopped"):
            self._refused(outcome)
        elif outcome.kind == "cancelled":
            self._message(f"{outcome.message}: nothing changed, the previous run and its patches stay", error=True)
        else:
            self._message(f"✗ not applied: {outcome.message}", error=True)

    def _refused(self, outcome: PatchOutcome) -> None:
        text = Text()
        text.append("✗ not applied: " if outcome.kind == "refused" else "■ ", style="bold")
        text.append(outcome.message)
        lines = self.text_area.text.splitlines()
        self.error_line = outcome.line
        if outcome.line is not None and 1 <= outcome.line <= len(lines):
            row = outcome.line - 1
            text.append(f"\n{outcome.line:>4} │ {lines[row]}", style="bold")
            self.text_area.selection = Selection((row, len(lines[row])), (row, 0))  # the line, marked
            self.text_area.scroll_cursor_visible(center=True)
        text.append("\nNothing was swapped in; the text stays here to fix.", style="italic")  # dim: unreadable on red
        self._message(text, error=True)
        self.text_area.focus()
