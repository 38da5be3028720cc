"""Effective batch size and learning-rate scaling, made explicit instead of implied.

With W processes each taking ``per_process`` samples per micro-batch and ``grad_accum``
micro-batches per optimizer step, one step averages the gradient over
``effective = per_process x W x grad_accum`` samples. ``distributed.batch_size`` says whether
``training.batch_size`` is ``per_process`` (the effective batch grows with W) or ``global``
(split across processes: the effective batch stays that of one process).
``distributed.lr_scaling`` then scales ``training.lr`` by k = effective / (batch_size x grad_accum):
``linear`` (Goyal et al. 2017, with warm-up for large k) or ``sqrt`` (common for Adam).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from kiln.config.schema import KilnConfig
from kiln.errors import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    """What one optimizer step means for this run; recorded in summary.json as ``batch``."""

    world_size: int
    batch_size_mode: str  # per_process | global
    per_process_batch: int
    grad_accum: int
    effective_batch: int
    lr_scaling: str  # none | linear | sqrt
    lr_factor: float
    base_lr: float
    lr: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_plan(cfg: KilnConfig, world_size: int) -> BatchPlan:
    """The plan for ``world_size`` processes; a global batch that does not split evenly is an error."""
    t, d = cfg.training, cfg.distributed
    if d.batch_size == "global":
        if t.batch_size % world_size:
            raise ConfigError(
                f"training.batch_size={t.batch_size} with distributed.batch_size=global cannot be "
                f"split evenly over {world_size} processes; use a multiple of {world_size} "
                "or distributed.batch_size=per_process"
            )
        per_process = t.batch_size // world_size
    else:
        per_process = t.batch_size
    effective = per_process * world_size * t.grad_accum
    k = effective / (t.batch_size * t.grad_accum)
    factor = {"none": 1.0, "linear": k, "sqrt": math.sqrt(k)}[d.lr_scaling]
    return BatchPlan(
        world_size, d.batch_size, per_process, t.grad_accum, effective, d.lr_scaling, factor,
        t.lr, t.lr * factor,
    )
