"""glibc malloc tuning for training: keep memory freed between steps for reuse.

By default glibc serves big allocations with fresh ``mmap``s and returns free heap to the OS, so
a network's activations, freed and allocated again every step, are page-faulted in again every
step: for the reference CNN on one CPU core that was 277,000 page faults and 0.4 s of kernel time
per 2.3-second epoch, 12 % of its time (bench/allocator.py, bench/README.md). Fixing the mmap threshold at glibc's maximum (32 MiB) and raising the trim
threshold keeps that memory in the process. The price: the resident size stays at its peak, as
with PyTorch's own caching allocator on CUDA. Allocations over 32 MiB still take the slow path
(jemalloc or tcmalloc through LD_PRELOAD avoid it; see PyTorch's CPU performance guide).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1024**3  # free memory at the heap's top kept before any is given back
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def glibc_version() -> str | None:
    """"2.36" on a glibc system (Linux), None elsewhere (musl, macOS, Windows)."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    return text.split()[-1] if text and text.startswith("glibc") else None


def keep_freed_memory() -> str:
    """Tune this process's glibc malloc (see the module docstring); say what was done.

    Leaves the allocator alone when the user tuned it (``MALLOC_*_`` or ``GLIBC_TUNABLES``).
    """
    if not sys.platform.startswith("linux") or glibc_version() is None:
        return "not glibc: left alone"
    if any(os.environ.get(name) for name in _USER_SETTINGS) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "tuned by the environment: left alone"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):  # jemalloc, tcmalloc, mimalloc
        return "another allocator is preloaded: left alone"
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return "mallopt not found: left alone"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD):
        return f"kept: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"
    return "mallopt refused: left alone"
