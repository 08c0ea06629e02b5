"""Give the C heap's free pages back to the system after each batch (glibc's malloc_trim).

A batch passes through several threads (the fetch thread reads it, the
filing thread parses and files it, a parser thread reads the worker's
answer), and glibc gives each thread an arena of its own.  What a batch
leaves behind when it is freed is free memory inside those arenas, spread
between live objects, which glibc keeps (and the kernel counts as resident)
until something asks for it back: during a first sync, 20-24 MiB of the
daemon's arenas are free.  `malloc_trim(0)` after each filed batch hands
those pages back (MADV_DONTNEED on every free page of every arena), and the
next batch faults in only what it needs: 5-6 MiB less at the peak of a
first sync (docs/performance.md, "Memory (round 4)").

A trim is not free: the pages it hands back are faulted in again by the
next batches.  After every batch it cost 15 % of the ingest rate on a quiet
machine (`bench/ingest.py 10000`, acks off: 941 msgs/s, against 1,153 with
a trim at most every 0.2 s, which keeps the first sync of 10,000 / 30,000 /
100,000 messages at 115.6 / 118.3 / 119.9 MiB for the whole tree, against
112.5 / 114.0 / 116.2 after every batch).  So a process trims at most once
every TRIM_INTERVAL seconds.

Elsewhere than glibc (musl, macOS) there is no malloc_trim and `release`
does nothing.
"""

from __future__ import annotations

import ctypes
import time


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none."""
    try:
        # The process's own symbols, the C library's among them (no search for its file).
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


# At most one trim per this many seconds (see the docstring).
TRIM_INTERVAL = 0.2
_last = float("-inf")


def release() -> None:
    """Return the heap's free pages to the system, unless that was done in the last TRIM_INTERVAL s."""
    global _last
    if _TRIM is None:
        return
    now = time.monotonic()
    if now - _last < TRIM_INTERVAL:
        return
    _last = now
    _TRIM(0)
