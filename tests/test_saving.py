"""Saving a session never leaves half a file or a temporary, never replaces a link or a device.

A full disk is simulated below the zip (its file object refuses bytes past a budget, with ENOSPC, as a
full disk does), so the test needs no small filesystem of its own.
"""

from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradstep.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def save(target: Path):
    return CliRunner().invoke(main, ["check", "neuron", "--save", str(target)])


class FullDisk:
    """A file that takes ``budget`` bytes, then raises ENOSPC on every write, as a full disk does."""

    def __init__(self, inner, budget: int) -> None:
        self._inner, self._budget = inner, budget

    def write(self, data) -> int:
        if self._inner.tell() + len(data) > self._budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._inner.write(data)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest.fixture(scope="module")
def full_size(tmp_path_factory) -> int:
    path = tmp_path_factory.mktemp("size") / "whole.gradstep"
    assert save(path).exit_code == 1
    return path.stat().st_size


@pytest.mark.parametrize("short_by", ["most", "the end"])
def test_a_full_disk_is_a_message_the_old_file_stays_and_no_temporary_is_left(tmp_path, monkeypatch, full_size,
                                                                              short_by):
    budget = 2000 if short_by == "most" else full_size - 40  # in the arrays, or at the zip's directory
    real_init = zipfile.ZipFile.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        if "w" in str(args[1:2]) or kwargs.get("mode") == "w":
            self.fp = FullDisk(self.fp, budget)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", init)
    target = tmp_path / "run.gradstep"
    target.write_bytes(b"the session saved yesterday")
    done = save(target)
    assert done.exit_code == 2, done.output
    assert ("Traceback" not in done.output and done.exception is None) or isinstance(done.exception, SystemExit)
    assert f"{target}: cannot write it: No space left on device" in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["run.gradstep"]  # no .run.gradstep.*.tmp left on the full disk
    assert target.read_bytes() == b"the session saved yesterday"


def test_saving_onto_a_symlink_writes_its_target(tmp_path):
    real = tmp_path / "shared" / "run.gradstep"
    real.parent.mkdir()
    link = tmp_path / "latest.gradstep"
    link.symlink_to(real)
    assert save(link).exit_code == 1
    assert link.is_symlink() and zipfile.is_zipfile(real)
    assert CliRunner().invoke(main, ["open", str(link), "--report"]).exit_code == 1


def test_saving_onto_a_fifo_is_refused_and_leaves_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    done = save(fifo)
    assert done.exit_code == 2 and "it is a fifo, not a regular file: refused" in done.stderr
    assert fifo.is_fifo() and sorted(os.listdir(tmp_path)) == ["pipe"]


def test_devices_and_directories_are_not_regular_files(tmp_path):
    from gradstep.atomic import NotARegularFile, target_of

    with pytest.raises(NotARegularFile, match="a character device"):
        target_of("/dev/null")  # checked, never written: as root, a rename would replace the device
    with pytest.raises(NotARegularFile, match="a directory"):
        target_of(tmp_path)
    assert target_of(tmp_path / "new.gradstep") == tmp_path.resolve() / "new.gradstep"
