"""Which GPUs each sweep worker gets: ``workers: auto`` runs one worker per visible GPU (or per
``gpus_per_worker`` of them), each pinned with ``CUDA_VISIBLE_DEVICES``, so a trial's
``run.device: auto`` finds its own card as ``cuda:0``.

The ids handed out are the ones this process sees, as CUDA numbers them in
``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-...`` UUIDs): a sweep started with
``CUDA_VISIBLE_DEVICES=4,5`` pins its workers to 4 and 5, not to 0 and 1. Planning is a pure
function of the requested workers and the visible list, so it is tested without a GPU.

>>> plan = plan_workers("auto", 2, ["0", "1", "2", "3"])
>>> [w.get(CUDA_VISIBLE_DEVICES) for w in plan.envs]
['0,1', '2,3']
>>> plan_workers("auto", 1, []).count
1
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kiln.errors import SweepError

CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"  # CUDA's own variable: the devices a process sees


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers run, what each adds to its environment, and what to tell the user."""

    envs: list[dict[str, str]]  # one per worker: {} (not pinned) or {CUDA_VISIBLE_DEVICES: ids}
    message: str | None = None  # said once when the sweep starts (a fallback, idle GPUs, sharing)
    gpus: list[str] = field(default_factory=list)  # every visible GPU

    @property
    def count(self) -> int:
        return len(self.envs)

    @property
    def in_process(self) -> bool:
        """One worker that sees exactly what this process sees: it runs here, no subprocess."""
        only = self.envs[0].get(CUDA_VISIBLE_DEVICES) if self.count == 1 else None
        return self.count == 1 and (only is None or only.split(",") == self.gpus)


def visible_gpus(environ: Mapping[str, str] | None = None, device_count: int | None = None) -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` names them (``0``..``n-1``
    when it is unset); ``device_count`` defaults to ``torch.cuda.device_count()`` (0 without CUDA:
    then none is visible, whatever the variable says)."""
    env = os.environ if environ is None else environ
    if device_count is None:
        import torch

        device_count = torch.cuda.device_count()
    listed = env.get(CUDA_VISIBLE_DEVICES)
    if listed is None:
        return [str(i) for i in range(device_count)]
    # CUDA stops at the first invalid entry and torch counts what it found: keep that many
    return [part.strip() for part in listed.split(",") if part.strip()][:device_count]


def plan_workers(workers: int | Literal["auto"], gpus_per_worker: int, gpus: Sequence[str]) -> WorkerPlan:
    """The workers for ``workers`` (a number, or ``auto``: one per ``gpus_per_worker`` visible GPUs)."""
    gpus = list(gpus)
    if gpus_per_worker < 1:
        raise SweepError(f"gpus_per_worker must be at least 1, got {gpus_per_worker}")
    if not gpus:
        if workers == "auto":
            return WorkerPlan([{}], "workers: auto found no CUDA GPU, so the sweep falls back to 1 "
                              "worker on the CPU (set workers: N to run N trials at once on the CPU)")
        return WorkerPlan([{} for _ in range(workers)])
    groups = [gpus[i:i + gpus_per_worker] for i in range(0, len(gpus) - gpus_per_worker + 1, gpus_per_worker)]
    if not groups:
        raise SweepError(
            f"gpus_per_worker={gpus_per_worker}, but only {len(gpus)} GPU(s) are visible "
            f"({CUDA_VISIBLE_DEVICES}: {','.join(gpus)})",
            hint=f"use --gpus-per-worker {len(gpus)} or fewer",
        )
    count = len(groups) if workers == "auto" else workers
    envs = [{CUDA_VISIBLE_DEVICES: ",".join(groups[k % len(groups)])} for k in range(count)]
    notes = []
    idle = gpus[len(groups) * gpus_per_worker:]
    if idle and workers == "auto":
        notes.append(f"GPU(s) {','.join(idle)} stay idle ({len(gpus)} visible, {gpus_per_worker} per worker)")
    if count > len(groups):
        notes.append(f"{count} workers share {len(groups)} GPU group(s) round-robin")
    return WorkerPlan(envs, "; ".join(notes) or None, gpus)


def describe(plan: WorkerPlan) -> list[str]:
    """One line per pinned worker: ``worker 0: CUDA_VISIBLE_DEVICES=0,1``."""
    return [f"worker {k}: {CUDA_VISIBLE_DEVICES}={env[CUDA_VISIBLE_DEVICES]}"
            for k, env in enumerate(plan.envs) if CUDA_VISIBLE_DEVICES in env]
