"""Nothing saved is lost: an earlier session's patches, an undone patch, text typed but not applied.

These drive the debugger's session (``tui/session.py``, no Textual) as the app's keys do; the app's own
handling (the start message, the editor writing drafts as they are typed) is in test_tui_patch.py.
"""

from __future__ import annotations

import pytest

from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.patch import Patch, default_patch_file, drafts_file, read_file, source_of
from gradstep.tui.session import Debugger

BACKWARD_FIX = ("numpy.backward", "grad_y = output - gt", "grad_y = 2*(output-gt)")
LOSS_HALF = ("numpy.loss", "return (output - gt) ** 2", "return 0.5 * (output - gt) ** 2")


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return tmp_path


def debugger() -> Debugger:
    """A new `gradstep neuron` session, as the app makes it."""
    return Debugger(Engine(load_scenario("neuron", "as-posted")))


def edited(d: Debugger, change: tuple[str, str, str]) -> Patch:
    target, old, new = change
    source = source_of(d.patches.base, target)
    assert old in source
    return Patch(target, source.replace(old, new))


def apply(d: Debugger, patch: Patch) -> None:
    outcome = d.patches.apply(d, patch, 0)
    assert outcome.kind == "applied", outcome.message


def saved() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    found = read_file(default_patch_file(load_scenario("neuron", "as-posted")))
    return ([(p.target, p.source.strip()) for p in found.in_force], [(p.target, p.source.strip()) for p in found.kept])


def test_a_new_session_keeps_the_patches_an_earlier_one_saved_and_offers_them():
    first = debugger()
    fix = edited(first, BACKWARD_FIX)
    apply(first, fix)
    assert saved() == ([("numpy.backward", fix.source.strip())], [])

    second = debugger()  # `gradstep neuron` again, without --patch
    notes = second.patches.start_notes("f", "ctrl+r")
    assert any("numpy.backward" in n and str(default_patch_file(second.patches.base)) in n for n in notes)
    assert second.patches.drafts["numpy.backward"] == fix.source  # offered: one apply away
    half = edited(second, LOSS_HALF)
    apply(second, half)
    in_force, kept = saved()
    assert in_force == [("numpy.loss", half.source.strip())]  # what this session has in force
    assert ("numpy.backward", fix.source.strip()) in kept  # and the earlier session's fix, still on disk


def test_undo_and_reset_keep_what_was_applied_on_disk():
    d = debugger()
    fix = edited(d, BACKWARD_FIX)
    apply(d, fix)
    assert d.patches.undo(d, 0).kind == "applied"
    assert saved() == ([], [("numpy.backward", fix.source.strip())])  # not in force, not lost either
    assert d.patches.redo(d, 0).kind == "applied"
    half = edited(d, LOSS_HALF)
    apply(d, half)
    assert d.patches.reset(d, 0).kind == "applied"
    in_force, kept = saved()
    assert in_force == [] and {t for t, _ in kept} == {"numpy.backward", "numpy.loss"}


def test_a_patch_file_that_cannot_be_read_is_moved_aside_not_overwritten():
    path = default_patch_file(load_scenario("neuron", "as-posted"))
    path.parent.mkdir(parents=True)
    path.write_text("# --- gradstep patch: numpy.nosuch ---\ndef f(): pass\n")
    d = debugger()
    assert any("moved to" in n for n in d.patches.start_notes("f", "ctrl+r"))
    aside = path.with_name(path.name + ".unreadable-1")
    assert aside.read_text().startswith("# --- gradstep patch: numpy.nosuch")
    apply(d, edited(d, BACKWARD_FIX))
    assert saved()[0][0][0] == "numpy.backward"


def test_drafts_are_kept_on_disk_and_come_back():
    d = debugger()
    text = source_of(d.patches.base, "numpy.loss").replace("** 2", "** 2  # half done")
    d.patches.keep_draft("numpy.loss", text)
    assert d.patches.save_drafts() is None
    path = drafts_file(default_patch_file(d.patches.base))
    assert "# half done" in path.read_text()

    again = debugger()  # after a crash: the text typed is back
    assert again.patches.drafts == {"numpy.loss": text}
    assert any("numpy.loss" in n and str(path) in n for n in again.patches.start_notes("f", "ctrl+r"))
    apply(again, Patch("numpy.loss", text))  # applied: a draft no more
    assert again.patches.save_drafts() is None and not path.exists()


def test_a_symlinked_patch_file_is_written_through(tmp_path, state_home):
    real = tmp_path / "mine" / "fixes.py"
    real.parent.mkdir()
    link = default_patch_file(load_scenario("neuron", "as-posted"))
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    d = debugger()
    apply(d, edited(d, BACKWARD_FIX))
    assert link.is_symlink() and "2*(output-gt)" in real.read_text()
