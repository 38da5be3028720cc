"""How much memory a training step takes at its peak, and how much it may take: one probe per
kind of device. ``HEADROOM`` (10%) is kept free, for the allocator's fragmentation, evaluation
batches and whatever else the process does later.

On CUDA the probe reads the caching allocator (``torch.cuda.max_memory_reserved``: what the
process holds at the peak, which is what runs out) against the card's total memory, less what
other processes hold. On a CPU there is no device memory limit to find: the probe measures the
same step against the RAM available now (``psutil``), shared with every other process, by the
process's peak resident set (Linux's VmHWM, reset before each try through /proc/self/clear_refs).
Elsewhere (macOS, Windows, MPS) no peak can be measured reliably and the finder refuses.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Protocol

import torch

from kiln.errors import KilnError

HEADROOM = 0.10  # share of the memory left free
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class MemoryProbe(Protocol):
    """Measures one step's peak against a budget."""

    @property
    def description(self) -> str:
        """What is measured against what, for the report (one line)."""
        ...

    def budget(self) -> int:
        """Bytes the measured peak may reach (the headroom already taken off)."""
        ...

    def reset(self) -> None:
        """Start a new measurement (frees what can be freed)."""
        ...

    def peak(self) -> int:
        """Bytes at the peak since ``reset``, in the same terms as ``budget``."""
        ...


class CudaProbe:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(device)
        others = total - free - torch.cuda.memory_reserved(device)  # other processes, the context
        self.total = total
        self._budget = int(total * (1 - HEADROOM)) - others

    @property
    def description(self) -> str:
        name = torch.cuda.get_device_name(self.device)
        return (f"CUDA memory of {name} ({_gib(self.total)} GiB); a batch fits when the peak the "
                f"process reserves stays under {_gib(self._budget)} GiB ({HEADROOM:.0%} kept free)")

    def budget(self) -> int:
        return self._budget

    def reset(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        torch.cuda.synchronize(self.device)
        return int(torch.cuda.max_memory_reserved(self.device))


class LinuxRamProbe:
    """The process's peak resident memory against the RAM available when the search starts."""

    def __init__(self) -> None:
        import psutil

        self.available = int(psutil.virtual_memory().available)
        self.resident = int(psutil.Process().memory_info().rss)
        self._budget = int((self.available + self.resident) * (1 - HEADROOM))

    @property
    def description(self) -> str:
        return (f"RAM (CPU: there is no device memory limit to find): a batch fits when the "
                f"process's peak resident memory stays under {_gib(self._budget)} GiB, "
                f"{1 - HEADROOM:.0%} of the {_gib(self.available)} GiB available now plus what the "
                "process holds; other processes share it, and on a CPU speed stops growing with the "
                "batch long before memory runs out")

    def budget(self) -> int:
        return self._budget

    def reset(self) -> None:
        _CLEAR_REFS.write_text("5")  # "5": reset the peak resident set size (proc(5), Linux 4.0+)

    def peak(self) -> int:
        found = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
        assert found is not None, "/proc/self/status has no VmHWM line"
        return int(found.group(1)) * 1024


def probe_for(device: torch.device) -> MemoryProbe:
    """The probe for ``device``, or a KilnError saying why none can measure there."""
    if device.type == "cuda":
        return CudaProbe(device)
    if device.type == "cpu" and sys.platform.startswith("linux") and _can_reset_peak():
        return LinuxRamProbe()
    raise KilnError(
        f"kiln tune batch-size cannot measure memory on {device.type} here ({sys.platform}): it "
        "measures a step's peak in CUDA memory, or on a Linux CPU in RAM (the peak resident set)",
        hint="run it on a CUDA machine (run.device=cuda), or choose training.batch_size by hand",
    )


def _can_reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _STATUS.is_file()


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}"
