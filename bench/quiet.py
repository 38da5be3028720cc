"""Shared by the benchmarks: how busy the rest of the machine is, and waiting until it is quiet.

A busy neighbour on a small machine changes every timing, so a measurement first waits for calm.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def others_busy() -> float:
    """Cores used by all processes over 0.2 s, from /proc/stat (0 where it does not exist)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields) - fields[3] - fields[4], sum(fields)

    try:
        busy0, total0 = sample()
        time.sleep(0.2)
        busy1, total1 = sample()
    except OSError:
        return 0.0
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)


def wait_quiet(max_wait: float) -> bool:
    """Wait (up to ``max_wait`` s) until the other processes use less than half a core."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        if others_busy() < 0.5:
            return True
    return False
