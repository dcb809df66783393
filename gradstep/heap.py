"""Giving memory the process has freed back to the operating system.

A long run frees the window's old steps one by one while new ones are made,
and glibc's allocator keeps most of the pages it freed. They are reused, but
not perfectly: over thousands of steps the holes add up, and a 14,000-step
run's peak would sit several megabytes above a 1,400-step one's although the
trace holds the same. ``malloc_trim`` hands the free pages back. Elsewhere
(macOS, Windows, musl) there is nothing to call and this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        # The symbols the process already has (its C library's among them): nothing to search for.
        return ctypes.CDLL(None).malloc_trim
    except (OSError, TypeError, AttributeError):  # no such handle here (Windows), or not glibc
        return None


def give_back_freed_memory() -> bool:
    """Return the heap's free pages to the system; whether there was a way to."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
