"""Giving memory the process has freed back to the operating system.

A long run frees the window's old steps one by one while new ones are made,
and glibc's allocator keeps most of the pages it freed. They are reused, but
not perfectly: over thousands of steps the holes add up, and a 14,000-step
run's peak would sit several megabytes above a 1,400-step one's although the
trace holds the same. ``malloc_trim`` hands the free pages back. Elsewhere
(macOS, Windows, musl) there is nothing to call and this does nothing.

Big tensors are another matter. glibc maps a big block on its own and unmaps it
when freed, but it then raises the size it maps from to that block's (up to
32 MB), so the next blocks of that size come from the heap, and a freed one in
the middle of it stays in the process. A check allocates and frees blocks the
size of the model's weights all the time (each step's gradients, updates, copies;
a diagnosis's re-runs): on a 2048 x 2048 layer the heap kept some 400 MB of such
holes. :func:`map_big_blocks` fixes the size instead (``mallopt``), at 8 MiB:
blocks that big cost a page fault per page to map anew, small next to the
arithmetic on them, and a smaller size measured 12% slower on a 784-1024-1024-10
MLP (4 MB weights) for 3% less memory.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable

BIG_BLOCK_BYTES = 8 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h


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


def map_big_blocks(threshold: int = BIG_BLOCK_BYTES) -> bool:
    """Have glibc map every block of ``threshold`` bytes or more on its own, and unmap it when freed, for the
    rest of the process; whether it could. Left alone where the user set ``MALLOC_MMAP_THRESHOLD_``."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, TypeError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
