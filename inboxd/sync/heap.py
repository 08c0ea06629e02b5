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
first sync (docs/performance.md, "Memory (round 4)"), at no cost visible in
its rate.

Elsewhere than glibc (musl, macOS) there is no malloc_trim and `release`
does nothing.
"""

from __future__ import annotations

import ctypes


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


def release() -> None:
    """Return the heap's free pages to the system; never raises."""
    if _TRIM is not None:
        _TRIM(0)
