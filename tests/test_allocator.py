"""Memory given back to the OS after peers' buffers go (glibc only; skipped elsewhere)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from adapter.allocator import (
    MMAP_THRESHOLD_BYTES,
    TRIM_AFTER_BYTES,
    Trimmer,
    large_buffers_to_the_os,
)

GLIBC = Trimmer()._libc is not None


@pytest.mark.skipif(not GLIBC, reason="no glibc malloc_trim here")
async def test_large_releases_trim_once_per_interval() -> None:
    trimmer = Trimmer(interval=0.05)
    for _ in range(10):  # a burst of releases: one trim, not ten
        trimmer.released(TRIM_AFTER_BYTES)
    await asyncio.sleep(0.2)
    assert trimmer.trims == 1
    trimmer.released(1024)  # small releases wait for more before trimming
    await asyncio.sleep(0.2)
    assert trimmer.trims == 1


@pytest.mark.skipif(not GLIBC, reason="no glibc mallopt here")
def test_the_mmap_threshold_is_fixed() -> None:
    assert large_buffers_to_the_os()


# Run in a fresh interpreter: glibc asks for a mapping only when the heap cannot serve a
# request, so many blocks are held at once (more than any free heap a process starts with).
_PROBE = """
import ctypes, ctypes.util, sys
from adapter.allocator import large_buffers_to_the_os

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks "
                                               "fsmblks uordblks fordblks keepcost").split()]

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.mallinfo2.restype = MallInfo2
assert large_buffers_to_the_os()
size, count = int(sys.argv[1]), int(sys.argv[2])
before = libc.mallinfo2().hblks
held = [bytearray(size) for _ in range(count)]
print(libc.mallinfo2().hblks - before)
"""


def _own_mappings(size: int, count: int = 64) -> int:
    """How many of `count` blocks of `size` bytes, held together, got a mapping of their own."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(size), str(count)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return int(done.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallinfo2 only")
@pytest.mark.parametrize(
    ("size", "mapped"),
    [
        (90_112, False),  # SQLite's page-cache bulk for each ephemeral table: 20 pages of 4 KiB
        (64 * 1024 + 100, False),  # one full MLLP read copied out of the receive buffer
        (MMAP_THRESHOLD_BYTES + 4096, True),  # a peer's large buffer: given back when freed
        (1024 * 1024, True),
    ],
)
def test_blocks_below_the_threshold_come_from_the_heap_and_larger_ones_get_a_mapping(
    size: int, mapped: bool
) -> None:
    own = _own_mappings(size)
    assert own >= 60 if mapped else own == 0
