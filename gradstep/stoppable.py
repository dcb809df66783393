"""Stopping the user's code on a worker thread, even when it never returns, and keeping it from ending the process.

A patch or a scenario function may loop forever (``while True: pass``) or
call ``os._exit``. Asking between two steps is not enough to stop it, and a
thread cannot be killed; but Python can be made to raise an exception in
another thread at its next instruction (``PyThreadState_SetAsyncExc``).
:class:`JobStopper` runs a job on the current thread and :meth:`~JobStopper.stop`
raises :class:`Stopped` in it; :func:`time_limit` does the same when a block
runs too long (:class:`TimedOut`). Code inside a C call that never returns
(``time.sleep(1e9)``) gets the exception only when the call returns: the app
then leaves the thread behind, and quitting ends the process regardless.

:func:`guard_exits` makes ``os._exit`` raise :class:`ExitCalled` (a
``SystemExit``) in a thread running a job instead of ending the process;
``sys.exit`` raises ``SystemExit`` already. Callers report either as the user
code's error.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc  # no argtypes: None must pass as NULL
_local = threading.local()


class Stopped(BaseException):
    """Raised inside a job's thread to stop the user's code: escape, quit, or a time limit.

    ``where``: set on the way out by :func:`gradstep.sides.call`, the function it was stopped in.
    """

    where: object = None


class TimedOut(Stopped):
    """Raised by :func:`time_limit`: the block ran longer than it may."""


class ExitCalled(SystemExit):
    """``os._exit(code)`` called by code running in a job: it ends the job, not the process."""

    def __str__(self) -> str:
        return f"os._exit({self.code})"


def _raise_in(ident: int, exc: type[BaseException]) -> None:
    """Raise ``exc`` in thread ``ident`` at its next instruction."""
    _set_async_exc(ctypes.c_ulong(ident), ctypes.py_object(exc))


class _TakenBack(BaseException):
    """Put in place of a stop not raised yet, and caught at once: how a stop is taken back."""


def _take_back() -> None:
    """Take back a stop asked of this thread and not raised yet.

    Not ``PyThreadState_SetAsyncExc(id, NULL)``: on CPython 3.11 that leaves the
    interpreter's "pending" flag up with nothing pending, and from then on any
    exception raised under a trace function (the diagnosis's line recorder)
    spins forever. Instead a harmless exception replaces the pending one and is
    caught here, which lowers the flag as a delivered exception does.
    """
    try:
        _raise_in(threading.get_ident(), _TakenBack)
        for _ in range(1_000_000):  # delivered at the next check: the call's return, or the loop's back jump
            pass
    except _TakenBack:
        pass


class JobStopper:
    """Runs one job at a time on the calling thread; another thread may stop it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident: int | None = None
        self._asked: type[Stopped] | None = None

    @property
    def running(self) -> bool:
        return self._ident is not None

    def run(self, job: Callable[[], T], stopped: Callable[[Stopped], T]) -> T:
        """``job()``; if it is stopped and does not say so itself, ``stopped(the exception)``."""
        ident = threading.get_ident()
        with self._lock:
            self._ident, self._asked = ident, None
        _local.in_job = True
        try:
            try:
                return job()
            finally:
                with self._lock:
                    self._ident = None
                    if self._asked is not None:
                        _take_back()  # asked as the job ended: it must not hit the thread afterwards
        except Stopped as stop:  # not caught by the job itself (a move of the live engine, say)
            return stopped(stop)
        finally:
            _local.in_job = False

    def stop(self, kind: type[Stopped] = Stopped) -> bool:
        """Raise ``kind`` in the running job's thread; False when no job runs, or it is committing its result."""
        with self._lock, _shield_lock:
            if self._ident is None or self._ident in _shielded:
                return False
            self._asked = kind
            _raise_in(self._ident, kind)
            return True


_shield_lock = threading.Lock()
_shielded: set[int] = set()


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A block a stop must not cut in two (committing a job's result): a stop asked meanwhile is dropped."""
    ident = threading.get_ident()
    with _shield_lock:
        _shielded.add(ident)
        _take_back()  # one asked a moment ago and not raised yet: the work it would stop is done
    try:
        yield
    finally:
        with _shield_lock:
            _shielded.discard(ident)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`TimedOut` in this thread if the block runs longer than ``seconds``."""
    ident = threading.get_ident()
    lock = threading.Lock()
    state = {"open": True, "fired": False}

    def fire() -> None:
        with lock:
            if state["open"]:
                state["fired"] = True
                _raise_in(ident, TimedOut)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["open"] = False
            if state["fired"]:
                _take_back()


# ---- os._exit -------------------------------------------------------------------

_real_exit: Callable[[int], Any] = os._exit


def _guarded_exit(code: int) -> None:
    if getattr(_local, "in_job", False):
        raise ExitCalled(code)
    _real_exit(code)


def guard_exits() -> None:
    """From now on ``os._exit`` in a job raises :class:`ExitCalled`; elsewhere it exits as ever."""
    os._exit = _guarded_exit


def error_words(error: BaseException) -> str:
    """An exception of the user's code in words: ``KeyError: 'w'``; an exit says what was called."""
    if isinstance(error, ExitCalled):
        return f"it called {error}, which would end gradstep: it must return instead"
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r}), which would end gradstep: it must return instead"
    if isinstance(error, TimedOut):
        return "it did not return in time: stopped"
    if isinstance(error, Stopped):
        return "it did not return: stopped"
    message = error.args[0] if isinstance(error, KeyError) and error.args else error  # KeyError's str is a repr
    return f"{type(error).__name__}: {message}"


def hard_exit(code: int) -> None:
    """End the process now, whatever threads still run (``os._exit`` itself, never guarded)."""
    _real_exit(code)
