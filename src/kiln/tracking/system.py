"""System metrics: CPU and RAM of this process and of the machine (and GPU use when there is one),
sampled on a background thread into every tracker — "is my GPU starved?" without another tool."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import psutil

from kiln.tracking.multi import MultiTracker


def sample(process: psutil.Process) -> dict[str, float]:
    """One reading. CPU percentages are since the previous reading (psutil's semantics)."""
    memory = psutil.virtual_memory()
    values = {
        "process_cpu_percent": process.cpu_percent(interval=None),
        "process_rss_mb": process.memory_info().rss / 2**20,
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_percent": memory.percent,
        "memory_used_mb": (memory.total - memory.available) / 2**20,
    }
    values.update(_gpu())
    return values


def _gpu() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {}
    out: dict[str, float] = {}
    for index in range(torch.cuda.device_count()):
        out[f"gpu{index}_memory_allocated_mb"] = torch.cuda.memory_allocated(index) / 2**20
        out[f"gpu{index}_memory_reserved_mb"] = torch.cuda.memory_reserved(index) / 2**20
        with contextlib.suppress(Exception):  # needs NVML (pynvml); memory figures still come
            out[f"gpu{index}_utilization_percent"] = float(torch.cuda.utilization(index))
    return out


class SystemMonitor:
    """Samples every ``interval`` seconds until stopped; ``step`` gives the current optimizer step."""

    def __init__(self, tracker: MultiTracker, interval: float, step: Callable[[], int]) -> None:
        self.tracker = tracker
        self.interval = interval
        self.step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kiln-system-metrics", daemon=True)
        self._process = psutil.Process()

    def start(self) -> None:
        sample(self._process)  # prime the CPU counters; the first real reading covers an interval
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            values: dict[str, Any] = sample(self._process)
            try:
                self.tracker.log_metrics(values, self.step(), "system")
            except ValueError:  # the run's logs were closed under us: the run is over
                return
