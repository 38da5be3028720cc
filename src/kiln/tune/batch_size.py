"""The largest training batch that fits, with ``HEADROOM`` of the memory kept free.

The search (Lightning's ``binsearch`` scaling): from ``training.batch_size``, halve until a batch
fits, double until one does not (or the training split's size is reached), then bisect between
the last that fitted and the first that did not. Each try trains a copy of the model for
``steps`` optimizer steps (the first creates the optimizer's state, which counts against memory)
and measures the peak with a :class:`~kiln.tune.memory.MemoryProbe`. On CUDA a try that runs out
of memory simply does not fit. On a CPU running out of RAM cannot be caught, so a try is skipped
(counted as not fitting) when a straight line through the last two measurements predicts it over
budget.

With ``keep_effective_batch`` the suggestion keeps ``batch_size x grad_accum`` as it is: the batch
is the largest divisor of the effective batch that fits, and ``grad_accum`` makes up the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from kiln.errors import KilnError, UsageError
from kiln.tune.memory import MemoryProbe, probe_for
from kiln.tune.step import new_scaler, train_step
from kiln.tune.workbench import Workbench, isolated


@dataclass(frozen=True)
class Try:
    batch_size: int
    fits: bool
    peak_bytes: int | None  # None: ran out of memory, or skipped as predicted over budget
    note: str = ""


@dataclass(frozen=True)
class BatchFinding:
    """The largest batch that fits, and what ``training`` should say to use it."""

    largest: int  # the largest batch that fitted
    batch_size: int  # the suggested training.batch_size
    grad_accum: int  # the suggested training.grad_accum
    effective_batch: int  # batch_size x grad_accum of the suggestion
    original_effective_batch: int
    budget_bytes: int
    measured: str  # what was measured against what (the probe's description)
    limited_by: str  # "memory" or "the training split's size (N samples)"
    tries: list[Try] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_batch_size(bench: Workbench, *, keep_effective_batch: bool = False, steps: int = 2,
                    max_batch_size: int | None = None, probe: MemoryProbe | None = None) -> BatchFinding:
    """Search the largest batch that fits on ``bench``'s device, on a copy of its model and
    optimizer (:func:`~kiln.tune.workbench.isolated`); ``max_batch_size`` caps the search
    (default: the training split's size)."""
    t = bench.config.training
    cap = min(max_batch_size or bench.train_size, bench.train_size)
    if cap < 1:
        raise UsageError(f"--max-batch-size must be at least 1, got {max_batch_size}")
    probe = probe or probe_for(bench.device)
    tries: list[Try] = []
    with isolated(bench) as (model, optimizer):
        scaler = new_scaler(bench)

        def fits(size: int) -> bool:
            predicted = _predicted(tries, size)
            if bench.device.type != "cuda" and predicted is not None and predicted > probe.budget():
                tries.append(Try(size, False, None, f"predicted {predicted / 2**20:.0f} MiB: not tried"))
                return False
            tries.append(_try(bench, model, optimizer, scaler, probe, size, steps))
            return tries[-1].fits

        good, bad = _search(fits, min(t.batch_size, cap), cap)
    if good == 0:
        raise KilnError(
            f"not even a batch of 1 fits: {probe.description}",
            hint="use a smaller model, training.precision=bf16, or a device with more memory",
        )
    effective = t.batch_size * t.grad_accum
    if keep_effective_batch:
        batch = _divisor_at_most(effective, good)
        accum = effective // batch
    else:
        batch, accum = good, t.grad_accum
    if bad is not None:
        limited = "memory"
    elif cap == bench.train_size:
        limited = f"the training split's size ({bench.train_size} samples)"
    else:
        limited = f"--max-batch-size {cap}"
    return BatchFinding(good, batch, accum, batch * accum, effective, probe.budget(), probe.description,
                        limited, tries)


def _search(fits: Any, start: int, cap: int) -> tuple[int, int | None]:
    """(largest size that fits, smallest known not to; None when ``cap`` fits)."""
    size = start
    while not fits(size):
        if size == 1:
            return 0, 1
        size = max(1, size // 2)
    good, bad = size, None
    while good < cap:
        size = min(good * 2, cap)
        if not fits(size):
            bad = size
            break
        good = size
    while bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good, bad


def _try(bench: Workbench, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         scaler: torch.amp.GradScaler, probe: MemoryProbe, size: int, steps: int) -> Try:
    batches = iter(bench.loader(size))
    batch = next(batches)
    del batches  # the loader's iterator (and any worker processes) before measuring
    probe.reset()
    try:
        for _ in range(steps):
            train_step(bench, model, optimizer, scaler, [batch])
    except torch.cuda.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        return Try(size, False, None, "out of memory")
    peak = probe.peak()
    return Try(size, peak <= probe.budget(), peak)


def _predicted(tries: list[Try], size: int) -> float | None:
    """The peak at ``size`` on the line through the two largest measured tries below it."""
    known = sorted((t.batch_size, t.peak_bytes) for t in tries if t.peak_bytes is not None and t.batch_size < size)
    if len(known) < 2:
        return None
    (b1, p1), (b2, p2) = known[-2], known[-1]
    slope = max(0.0, (p2 - p1) / (b2 - b1))
    return p2 + slope * (size - b2)


def _divisor_at_most(effective: int, limit: int) -> int:
    """The largest divisor of ``effective`` not above ``limit`` (1 always divides)."""
    return max(d for d in range(1, min(effective, limit) + 1) if effective % d == 0)
