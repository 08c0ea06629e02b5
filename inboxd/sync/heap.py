"""Keep the C heap small through a sync: free pages given back after each batch (glibc's
malloc_trim), large blocks in mappings of their own (mallopt).

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

Large blocks are kept out of the arenas (`keep_large_blocks_apart`).
glibc serves a block of M_MMAP_THRESHOLD bytes (128 KiB) or more from a
mapping of its own, unmapped whole when it is freed; but when such a
block is freed, glibc raises the threshold to that block's size (up to 32
MiB).  After the first large mail of a sync, large mail bodies,
attachments and SQLite's records of them were cut out of the threads'
arenas, and freed between smaller live blocks they left holes that the
next batches did not fit: the fetch thread's arena held 4-6 MiB and crept
up through the whole sync.  With the threshold set (which also ends its rising) that arena
stays at about 1 MiB, and the tree's peak in a first sync is 2-3 MiB lower
(docs/performance.md, "Memory (round 7)").

Elsewhere than glibc (musl, macOS) there is no malloc_trim or mallopt, and
both functions do nothing.
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


def _mallopt():
    """glibc's mallopt, or None where the C library has none."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


_MALLOPT = _mallopt()

# glibc's <malloc.h>: the parameter, and its default (which it keeps only while nobody sets it).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


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


def keep_large_blocks_apart() -> bool:
    """Serve every block of MMAP_THRESHOLD bytes or more from a mapping of its own, for the rest of
    the process's life (the docstring says why); whether the C library took the setting."""
    if _MALLOPT is None:
        return False
    return _MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
