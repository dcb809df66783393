"""A job on a worker thread that another thread can stop at its next Python instruction.

The diagnosis can run long on a big layer and checks no flag while it runs;
a thread cannot be killed, but Python can be made to raise an exception in
another thread at its next bytecode (``PyThreadState_SetAsyncExc``). So the
app stops a diagnosis at once when a step, a run, a patch or quitting needs
the engine worker. Code inside one long C call (a big matmul) gets the
exception when that call returns. Only work whose results are thrown away
when stopped (a diagnosis reads the engine and builds its own replicas) may
be run this way: a stop can land anywhere in it.

Nothing here touches Textual.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc  # no argtypes: None must pass as NULL


class JobStopped(BaseException):
    """Raised inside a stopped job's thread (a BaseException: the job's own ``except Exception`` lets it by)."""


def _raise_in(ident: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in thread ``ident`` at its next instruction; None takes back one not raised yet."""
    _set_async_exc(ctypes.c_ulong(ident), None if exc is None else ctypes.py_object(exc))


class StoppableJob:
    """Runs one job at a time on the calling thread; :meth:`stop`, from another thread, ends it early.

    :meth:`arm` (on the thread that starts the job) opens a job: a stop asked from then on applies to it, even
    one asked before its thread has started it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident: int | None = None
        self._asked = False

    def arm(self) -> None:
        with self._lock:
            self._asked = False

    def run(self, job: Callable[[], T], stopped: Callable[[], T]) -> T:
        """``job()``, or ``stopped()`` if it was stopped before it returned."""
        with self._lock:
            asked = self._asked
            if not asked:
                self._ident = threading.get_ident()
        if asked:
            return stopped()
        try:
            try:
                return job()
            finally:
                self._leave()
        except JobStopped:  # (raised in the job, or in the finally before it took the stop back)
            self._leave()
            return stopped()

    def _leave(self) -> None:
        """No more stops for this job; one asked for and not raised yet is taken back."""
        with self._lock:
            ident, self._ident = self._ident, None
            if ident is not None and self._asked:
                _raise_in(ident, None)

    def stop(self) -> None:
        """Stop the job armed: at once if it runs, before it starts if it has not yet (once; again is nothing)."""
        with self._lock:
            if self._asked:
                return
            self._asked = True
            if self._ident is not None:
                _raise_in(self._ident, JobStopped)
