"""Memory given back to the OS after peers' buffers go (glibc only; skipped elsewhere)."""

from __future__ import annotations

import asyncio

import pytest

from adapter.allocator import TRIM_AFTER_BYTES, Trimmer, large_buffers_to_the_os

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
