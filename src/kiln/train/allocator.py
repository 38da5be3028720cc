"""glibc malloc tuning for training: keep memory freed between steps for reuse.

By default glibc serves big allocations with fresh ``mmap``s and returns free heap to the OS, so
a network's activations, freed and allocated again every step, are page-faulted in again every
step: for the reference CNN on one CPU core that was 277,000 page faults and 0.4 s of kernel time
per 2.3-second epoch, 12 % of its time (bench/allocator.py, bench/README.md). Fixing the mmap threshold at glibc's maximum (32 MiB) and raising the trim
threshold keeps that memory in the process. The price: the resident size stays at its peak, as
with PyTorch's own caching allocator on CUDA. Allocations over 32 MiB still take the slow path
(jemalloc or tcmalloc through LD_PRELOAD avoid it; see PyTorch's CPU performance guide).

It is the one process-wide setting ``fit()`` cannot put back: glibc has no call that reads the
thresholds, and setting one ends glibc's dynamic adjustment of both for the life of the process.
A process that trains inside a larger application and must stay as it was sets
``run.keep_freed_memory=false``.
"""

from __future__ import annotations

import ctypes
import os
import sys

from kiln import settings

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1024**3  # free memory at the heap's top kept before any is given back


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
    tunables = os.environ.get(settings.GLIBC_TUNABLES, "")
    if any(os.environ.get(name) for name in settings.GLIBC_MALLOC_SETTINGS) or "malloc" in tunables:
        return "tuned by the environment: left alone"
    if "malloc" in os.environ.get(settings.LD_PRELOAD, ""):  # jemalloc, tcmalloc, mimalloc
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
