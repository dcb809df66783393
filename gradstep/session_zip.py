"""The session file's container: one zip of ``.npy`` arrays and a JSON manifest, read as untrusted.

Writing goes to a temporary file beside the target, renamed over it at the
end (:mod:`gradstep.atomic`), so a failure — a full disk, Ctrl-C — never
leaves half a file, nor the temporary, and the old file stays as it was. A
symlink is written through; a device or a fifo is refused. Arrays are written
in NumPy's own format with ``allow_pickle=False``.

Reading checks before it trusts: the zip's directory (member count, sizes
against what the file can hold, a cap on the total decompressed size, so a zip
bomb is refused before anything is inflated), then each array's ``.npy``
header before its data (a plain numeric or bool dtype only, a sane element
count, exactly as many bytes as the header declares). Every problem is an
:class:`ArchiveError` with one clear sentence.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy

from gradstep.atomic import AtomicWriter
from gradstep.safe_text import printable, shown
from gradstep.session_tree import plain_dtype

MANIFEST = "session.json"
SUFFIX = ".gradstep"  # by convention: the content, not the name, makes a session file
MAX_TOTAL_BYTES = 4 << 30  # decompressed, the whole file: far above any window and checkpoints gradstep keeps
MAX_MANIFEST_BYTES = 64 << 20
MAX_MEMBERS = 1 << 20
MAX_ELEMENTS = 1 << 31  # one array
_MAX_RATIO = 1100  # DEFLATE cannot expand beyond ~1032:1
_ARRAY_NAME = re.compile(r"arrays/[0-9]{1,9}\.npy")
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
                NotImplementedError, RuntimeError)


class ArchiveError(Exception):
    """The file is not a session file this gradstep can read: the message says why."""


class ArchiveWriter:
    """Writes arrays and then the manifest into a new zip, atomically."""

    def __init__(self, path: Path) -> None:
        self._file = AtomicWriter(path)  # OSError (NotARegularFile) for a device, a fifo, a directory
        self.path = self._file.target
        try:
            # Level 1: float data barely compresses, and the app saves while you wait.
            self._zip = zipfile.ZipFile(self._file.file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1,
                                        allowZip64=True)
        except BaseException:
            self._file.discard()
            raise
        self._count = 0

    def put(self, array: np.ndarray) -> str:
        name = f"arrays/{self._count}.npy"
        self._count += 1
        with self._zip.open(name, "w", force_zip64=array.nbytes > (1 << 30)) as out:
            npy.write_array(out, array, allow_pickle=False)
        return name

    def finish(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        self._zip.writestr(MANIFEST, text.encode("utf-8"))
        self._zip.close()
        self._file.commit()  # a session is for sharing: the umask decides its mode, not mkstemp's 0600

    def abort(self) -> None:
        """Give up: the temporary goes, whatever state a full disk left the zip in."""
        try:
            self._zip.close()  # may fail again the way the write did: nothing of it is kept anyway
        except Exception:  # the error that made us give up is the one to report
            pass
        finally:
            self._file.discard()


def looks_like_session(path: str | Path) -> bool:
    """A zip file with a session manifest in it (its content, not its name, decides)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return MANIFEST in zf.NameToInfo
    except (*_READ_ERRORS, TypeError):
        return False


class ArchiveReader:
    """A session zip opened for reading: its directory checked, arrays read and checked on demand."""

    def __init__(self, path: Path) -> None:
        try:
            self._size = path.stat().st_size
            self._zip = zipfile.ZipFile(path)
        except FileNotFoundError as error:
            raise ArchiveError("no such file") from error
        except IsADirectoryError as error:
            raise ArchiveError("is a directory, not a session file") from error
        except OSError as error:
            raise ArchiveError(f"cannot read it: {error.strerror or error}") from error
        except _READ_ERRORS as error:
            raise ArchiveError(f"not a gradstep session: not a zip file, or a truncated one ({error})") from error
        try:
            self._infos = self._checked_directory()
        except ArchiveError:
            self._zip.close()
            raise
        self._arrays: dict[str, np.ndarray] = {}

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def _checked_directory(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ArchiveError(f"holds {len(infos)} members, more than a session file ever has")
        by_name: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            if info.filename in by_name:
                raise ArchiveError(f"holds {info.filename} twice")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{info.filename} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ArchiveError(f"{info.filename} uses an unsupported compression")
            if info.header_offset + info.compress_size > self._size:
                raise ArchiveError(f"{info.filename} runs past the end of the file (truncated?)")
            if info.file_size > info.compress_size * _MAX_RATIO + 4096:
                raise ArchiveError(f"{info.filename} claims {info.file_size} bytes, more than its "
                                   f"{info.compress_size} compressed bytes can hold")
            total += info.file_size
            by_name[info.filename] = info
        if total > MAX_TOTAL_BYTES:
            raise ArchiveError(f"would decompress to {total} bytes, over the {MAX_TOTAL_BYTES}-byte limit")
        return by_name

    def manifest(self) -> dict[str, Any]:
        """The JSON manifest, strictly parsed."""
        info = self._infos.get(MANIFEST)
        if info is None:
            raise ArchiveError(f"not a gradstep session: it has no {MANIFEST}")
        if info.file_size > MAX_MANIFEST_BYTES:
            raise ArchiveError(f"its {MANIFEST} is {info.file_size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
        raw = self._read(info, info.file_size)
        try:
            manifest = _printable_strings(json.loads(raw.decode("utf-8"), parse_constant=_no_constant))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise ArchiveError(f"its {MANIFEST} is not valid JSON: {_short(error)}") from error
        if not isinstance(manifest, dict):
            raise ArchiveError(f"its {MANIFEST} is not a JSON object")
        return manifest

    def array(self, name: str) -> np.ndarray:
        """The array stored as ``name``, read-only; its header is checked before any data is read."""
        if name in self._arrays:
            return self._arrays[name]
        if not isinstance(name, str) or not _ARRAY_NAME.fullmatch(name):
            raise ArchiveError(f"refers to an array named {shown(name)}, which is not an array name")
        info = self._infos.get(name)
        if info is None:
            raise ArchiveError(f"refers to {name}, which is not in the file")
        try:
            with self._zip.open(info) as member:
                array = _read_npy(member, info, name)
        except _READ_ERRORS as error:
            raise ArchiveError(f"{name} cannot be read: {_short(error)}") from error
        self._arrays[name] = array
        return array

    def _read(self, info: zipfile.ZipInfo, size: int) -> bytes:
        try:
            with self._zip.open(info) as member:
                data = member.read(size + 1)
        except _READ_ERRORS as error:
            raise ArchiveError(f"{info.filename} cannot be read (damaged or truncated): {_short(error)}") from error
        if len(data) != size:
            raise ArchiveError(f"{info.filename} is {len(data)} bytes, not the {size} its directory says")
        return data


def _read_npy(member: IO[bytes], info: zipfile.ZipInfo, name: str) -> np.ndarray:
    version = npy.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(member, max_header_size=4096)
    elif version == (2, 0):
        shape, fortran, dtype = npy.read_array_header_2_0(member, max_header_size=4096)
    else:
        raise ArchiveError(f"{name} is a .npy file of version {version}, which gradstep does not write")
    if not plain_dtype(dtype):
        what = "Python objects (a pickle)" if dtype.hasobject else f"dtype {dtype}"
        raise ArchiveError(f"{name} holds {what}: refused, a session file holds plain numbers only")
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ArchiveError(f"{name} declares the shape {shape}")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise ArchiveError(f"{name} declares {count} elements (shape {shape}), over the {MAX_ELEMENTS} limit")
    nbytes = count * dtype.itemsize
    if nbytes != info.file_size - member.tell():
        raise ArchiveError(f"{name} declares {nbytes} bytes of data (shape {shape}, {dtype}) but holds "
                           f"{info.file_size - member.tell()}")
    data = member.read(nbytes)
    if len(data) != nbytes or member.read(1):
        raise ArchiveError(f"{name} is truncated")
    array = np.frombuffer(data, dtype=dtype, count=count)  # over immutable bytes: read-only
    return array.reshape(shape, order="F" if fortran else "C")


def _printable_strings(value: Any) -> Any:
    """Every string of the manifest, keys too, with its control characters escaped: a session file may come
    from anyone, and its names and messages end up on the terminal (``safe_text``)."""
    if isinstance(value, str):
        return printable(value, lines=True)
    if isinstance(value, list):
        return [_printable_strings(v) for v in value]
    if isinstance(value, dict):
        return {printable(k, lines=True): _printable_strings(v) for k, v in value.items()}
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not strict JSON")


def _short(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "…"
