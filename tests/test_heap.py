"""Large blocks stay in mappings of their own once `heap.keep_large_blocks_apart` has run.

glibc raises its mmap threshold to the size of the first mapped block that is
freed, so later mail bodies are cut out of the arenas; inboxd.sync.heap sets
the threshold so it stays.  Each case runs in a fresh interpreter (the
setting is for a process's life) and reads glibc's own count of mapped
bytes (mallinfo2's hblkhd) around a 300 KiB allocation made after a 1 MiB
block was freed.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from inboxd.sync import heap

PROBE = """
import ctypes, sys
from inboxd.sync import heap

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "apart":
    assert heap.keep_large_blocks_apart()
big = bytes(1 << 20)
del big  # A freed mapped block: glibc's dynamic threshold would rise to 1 MiB here.
before = libc.mallinfo2().hblkhd
block = bytes(300 * 1024)
print(libc.mallinfo2().hblkhd - before)
"""


def _has_mallinfo2() -> bool:
    try:
        ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return False
    return True


glibc = pytest.mark.skipif(heap._MALLOPT is None or not _has_mallinfo2(), reason="needs glibc 2.33 or later")


def _mapped_growth(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@glibc
def test_a_large_block_is_mapped_after_a_larger_one_was_freed():
    assert _mapped_growth("apart") >= 300 * 1024


@glibc
def test_without_the_setting_glibc_cuts_it_from_the_arena():
    # The behaviour the setting is there for: the threshold rose with the freed 1 MiB block.
    assert _mapped_growth("default") == 0


def test_the_setting_may_be_made_again():
    # StoreSink and the parser worker both make it; a second call changes nothing and never fails.
    assert heap.keep_large_blocks_apart() == heap.keep_large_blocks_apart()
