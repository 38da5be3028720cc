"""kiln's glibc malloc tuning, checked on the allocator itself in a fresh process (it is
process-wide and cannot be undone, so never in the test process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from kiln.train.allocator import glibc_version, keep_freed_memory

needs_glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or glibc_version() is None, reason="the tuning is for glibc (Linux)"
)

# Where glibc serves a 20 MiB malloc from: mallinfo2().hblkhd counts bytes in mmapped chunks.
PROBE = textwrap.dedent("""
    import ctypes, json, sys
    from kiln.train.allocator import keep_freed_memory

    libc = ctypes.CDLL("libc.so.6")
    fields = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in fields]
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)

    def mmapped_while_holding(size):
        pointer = libc.malloc(size)
        held = libc.mallinfo2().hblkhd
        libc.free(pointer)
        return held

    size = 20 * 1024 * 1024
    before = mmapped_while_holding(size)
    outcome = keep_freed_memory() if sys.argv[1] == "tune" else "not asked"
    after = mmapped_while_holding(size)
    print(json.dumps({"before": before, "after": after, "outcome": outcome}))
""")


def _probe(mode: str, **env: str) -> dict[str, object]:
    import os

    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@needs_glibc
def test_big_allocations_come_from_the_heap_once_tuned() -> None:
    size = 20 * 1024 * 1024
    result = _probe("tune")
    assert isinstance(result["before"], int) and result["before"] >= size  # glibc's default: a fresh mmap
    assert result["outcome"] == "kept: mmap threshold 32 MiB, trim threshold 1024 MiB"
    assert isinstance(result["after"], int) and result["after"] < size  # now from the heap, kept for reuse


@needs_glibc
def test_a_user_tuned_allocator_is_left_alone() -> None:
    result = _probe("tune", MALLOC_TRIM_THRESHOLD_="100000")
    assert result["outcome"] == "tuned by the environment: left alone"
    assert isinstance(result["after"], int) and result["after"] >= 20 * 1024 * 1024


def test_a_preloaded_allocator_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    expected = "another allocator is preloaded: left alone" if glibc_version() else "not glibc: left alone"
    assert keep_freed_memory() == expected


def test_off_glibc_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() == "not glibc: left alone"
