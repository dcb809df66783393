"""Writing a file whole or not at all: a temporary beside the target, renamed over it at the end.

A failure (a full disk, Ctrl-C) removes the temporary and leaves the old file
as it was. A symlink is written through: the link stays and its target gets
the new content. Anything that is neither a regular file nor a new path (a
directory, a device such as ``/dev/null``, a fifo, a socket) is refused before
anything is written: renaming over it would replace it.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"))


class NotARegularFile(OSError):
    """The path names something that is not a regular file: gradstep writes regular files only."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(errno.EINVAL, f"it is {kind}, not a regular file: refused, nothing written")
        self.filename = str(path)


def target_of(path: str | Path) -> Path:
    """Where writing ``path`` really goes: through any symlinks; NotARegularFile for a device, a fifo..."""
    real = Path(os.path.realpath(path))
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        return real  # a new file (or a dangling link's target, made now)
    for test, kind in _KINDS:
        if test(mode):
            raise NotARegularFile(Path(path), kind)
    return real


class AtomicWriter:
    """A temporary file beside ``target`` (after :func:`target_of`), committed with :meth:`commit`.

    Use it as a context manager: leaving the block without a commit (an error, Ctrl-C) removes the
    temporary, and the file at ``target`` stays as it was.
    """

    def __init__(self, path: str | Path) -> None:
        self.target = target_of(path)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        self.tmp = Path(tmp)
        self.file: IO[bytes] = os.fdopen(fd, "wb")
        self._done = False

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if not self._done:
            self.discard()

    def commit(self) -> Path:
        """Flush, give the file the mode a new file would have (or the old one's), and rename it over the target."""
        self.file.flush()
        os.fsync(self.file.fileno())  # a crash right after the rename must not leave an empty file
        self.file.close()
        self.tmp.chmod(_mode_for(self.target))
        os.replace(self.tmp, self.target)
        self._done = True
        return self.target

    def discard(self) -> None:
        """Remove the temporary, whatever state it is in (a full disk may refuse even the close)."""
        self._done = True
        try:
            self.file.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """``write`` the file's bytes into a temporary, then rename it over ``path``; the real path written."""
    with AtomicWriter(path) as writer:
        write(writer.file)
        return writer.commit()


def write_text_atomically(path: str | Path, text: str) -> Path:
    return write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def _umask() -> int:
    umask = os.umask(0)  # the only way to read it: set and put back, once, before any thread writes
    os.umask(umask)
    return umask


_UMASK = _umask()


def _mode_for(target: Path) -> int:
    """The old file's permissions, else what the umask gives a new file (mkstemp's 0600 is for secrets)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_UMASK
