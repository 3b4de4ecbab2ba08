"""Heap pages freed after loading go back to the OS (runtime/heap_release.py)."""

from __future__ import annotations

import ctypes
import platform

import pytest

import edgevlm.runtime.heap_release as heap_release
from edgevlm.runtime.heap_release import release_freed_heap


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_freed_small_blocks_stay_resident_until_released():
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = []
    for _ in range(20_000):  # 4 KiB each: below glibc's mmap threshold, so on the heap (~80 MB)
        block = libc.malloc(4096)
        ctypes.memset(block, 1, 4096)
        blocks.append(block)
    for block in blocks[:-1]:  # the last stays: freed pages below it cannot leave by themselves
        libc.free(block)
    held = _rss_mb()
    assert release_freed_heap()
    assert _rss_mb() < held - 40
    libc.free(blocks[-1])


def test_a_c_library_without_malloc_trim_is_left_alone(monkeypatch):
    monkeypatch.setattr(heap_release, "_malloc_trim", lambda: None)
    assert release_freed_heap() is False
