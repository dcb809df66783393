"""Where the debugger keeps a session's patches on disk, so that nothing once typed or applied is lost.

Two files per scenario and variant (or beside the ``--patch FILE`` given):

- the patch file, ``SCENARIO-VARIANT.py``: the patches in force (what ``--patch``
  applies), then every other patch applied there, by this session or an earlier
  or a parallel one, as *kept* sections (undone, reset, replaced). Each save
  reads the file first and folds in what it holds, so a new session never drops
  what an earlier one saved; a file that cannot be read as patches is moved
  aside, never overwritten;
- the drafts file, ``SCENARIO-VARIANT.drafts.py``: the editor's text typed but
  not applied, written as it is typed, so a crash or a kill loses at most the
  last moment's keys.

Opening the debugger on a scenario whose patch file holds patches in force
offers them: they open in the editor as drafts, and the start says where they are.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradstep import patch as patching
from gradstep.atomic import write_text_atomically
from gradstep.patch import Patch, PatchError, PatchSet


def _key(patch: Patch) -> tuple[str, str]:
    return patch.target, patch.source.strip()


class PatchStore:
    """A session's patch file and drafts file: read at the start, merged and written as the session goes."""

    def __init__(self, scenario: Any, path: Path, given: bool) -> None:
        """``given``: the file came with ``--patch`` (its patches are in force already, nothing to offer)."""
        self.scenario = scenario
        self.path = path
        self.drafts_path = patching.drafts_file(path)
        self.kept: list[Patch] = []  # every patch seen, in order; those in force are left out when written
        self.offered: list[Patch] = []  # an earlier session's patches in force, offered as drafts
        self.drafts: dict[str, str] = {}  # the drafts file as read at the start
        self.notes: list[str] = []  # what the start has to say: offers, files that could not be read
        self._written_drafts: dict[str, str] | None = None
        found = self._read()
        if found is not None and not given:
            self.offered = list(found.in_force)
        self._read_drafts()

    # ---- the patch file ------------------------------------------------------------
    def _read(self) -> patching.PatchFile | None:
        """Fold the file's sections into ``kept``; an unreadable file is moved aside, and said so."""
        if not self.path.exists():
            return None
        try:
            found = patching.read_file(self.path)
        except PatchError as error:
            self.notes.append(f"{error}; it was moved to {self._move_aside(self.path)}, and a new one started")
            return None
        for patch in [*found.in_force, *found.kept]:
            self.keep(patch)
        return found

    def _move_aside(self, path: Path) -> Path:
        for n in itertools.count(1):
            aside = path.with_name(f"{path.name}.unreadable-{n}")
            if not aside.exists():
                path.rename(aside)
                return aside
        raise AssertionError("unreachable")

    def keep(self, patch: Patch) -> None:
        if _key(patch) not in {_key(p) for p in self.kept}:
            self.kept.append(patch)

    def save(self, history: PatchSet) -> Path:
        """Write the patches in force, and every other one ever seen as kept sections (OSError if it cannot)."""
        with contextlib.suppress(OSError):  # the write below says what is wrong with the place
            self._read()  # what an earlier or a parallel session wrote since: kept, never dropped
        for patch in [*history.applied, *history.undone]:
            self.keep(patch)
        in_force = list(history.in_force().values())
        forced = {_key(p) for p in in_force}
        kept = [p for p in self.kept if _key(p) not in forced]
        return write_text_atomically(self.path, patching.dumps(in_force, self.scenario, kept))

    # ---- the drafts file -----------------------------------------------------------
    def _read_drafts(self) -> None:
        if not self.drafts_path.exists():
            return
        try:
            found = patching.read_file(self.drafts_path)
        except PatchError as error:
            self.notes.append(f"{error}; it was moved to {self._move_aside(self.drafts_path)}")
            return
        self.drafts = {p.target: p.source for p in found.in_force}
        self._written_drafts = dict(self.drafts)

    def save_drafts(self, drafts: Mapping[str, str]) -> None:
        """Write the drafts if they changed since the last write; no drafts: no file (OSError if it cannot)."""
        if self._written_drafts is not None and dict(drafts) == self._written_drafts:
            return
        if drafts:
            write_text_atomically(self.drafts_path, patching.dumps_drafts(drafts, self.scenario))
        else:
            self.drafts_path.unlink(missing_ok=True)
        self._written_drafts = dict(drafts)

    def offer_text(self, edit_key: str, apply_key: str) -> str:
        """What the start says of an earlier session's patches, or ""."""
        if not self.offered:
            return ""
        names = ", ".join(dict.fromkeys(p.target for p in self.offered))
        return (f"An earlier session saved patches for {self.scenario.name} ({self.scenario.variant}): {names}, "
                f"in {self.path}. They wait in the patch editor as drafts (✎): {edit_key} opens it, {apply_key} "
                f"applies one; or start with --patch {self.path} to apply them all. This session keeps them in "
                "that file.")
