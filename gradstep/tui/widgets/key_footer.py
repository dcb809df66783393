"""The footer: the keys that matter most, as many as fit the width, each whole; ``?`` (every key) always.

Textual's own footer lays every shown binding out and cuts the row at the
edge, mid-word. This one reads the screen's active bindings (so a remapped
key shows as remapped, and a key disabled during a run is dimmed) and adds
them in order of importance while they fit, then puts them back in the
order of the bindings, so the stepping keys stay first.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

# Most important first: stepping, the ways to the other panes (the only ones in the compact layout), patching,
# the workshop keys. What is not named here comes after, in the bindings' own order.
IMPORTANCE = ("interrupt", "step", "step_back", "continue", "show_tensors", "diagnose", "show_plot", "edit_patch",
              "present", "screenshot", "jump", "next_diverged", "find_tensor", "difference_mode", "undo_patch",
              "toggle_hex", "quit")
HELP = "help"
_GAP = "  "


class KeyFooter(Static):
    """One line of ``key Description`` pairs that fits, ``? Help`` at its end."""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, lambda _screen: self.draw())
        self.draw()

    def on_resize(self) -> None:
        self.draw()

    def draw(self) -> None:
        if not self.is_mounted:
            return
        shown = self._shown_bindings()
        self.update(fitted(shown, self.size.width or self.app.size.width))

    def _shown_bindings(self) -> list[tuple[str, str, str, bool]]:
        """(id, key as shown, description, enabled) for each binding the screen shows, once per binding."""
        out: dict[str, tuple[str, str, str, bool]] = {}
        for active in self.screen.active_bindings.values():
            binding = active.binding
            name = binding.id or binding.action
            if not binding.show or name in out:
                continue
            out[name] = (name, self.app.get_key_display(binding), binding.description, active.enabled)
        return list(out.values())


def fitted(bindings: list[tuple[str, str, str, bool]], width: int) -> Text:
    """The most important bindings that fit ``width`` whole, in their own order, help last."""
    help_entry = next((b for b in bindings if b[0] == HELP), None)
    rank = {name: i for i, name in enumerate(IMPORTANCE)}
    order = {b[0]: i for i, b in enumerate(bindings)}
    candidates = sorted((b for b in bindings if b[0] != HELP), key=lambda b: (rank.get(b[0], len(rank)), order[b[0]]))
    room = width - 1 - (_entry_width(help_entry) + len(_GAP) if help_entry else 0)
    chosen = []
    for entry in candidates:
        need = _entry_width(entry) + (len(_GAP) if chosen else 0)
        if need <= room:
            chosen.append(entry)
            room -= need
    chosen.sort(key=lambda b: order[b[0]])
    if help_entry:
        chosen.append(help_entry)
    text = Text(" ", no_wrap=True, overflow="crop")
    for i, (_, key, description, enabled) in enumerate(chosen):
        if i:
            text.append(_GAP)
        text.append(f" {key} ", style="bold reverse" if enabled else "dim reverse")
        text.append(description, style="" if enabled else "dim")
    return text


def _entry_width(entry: tuple[str, str, str, bool]) -> int:
    return len(entry[1]) + 2 + len(entry[2])
