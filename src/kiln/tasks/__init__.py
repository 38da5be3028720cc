"""Tasks: what a batch is, which loss applies and which metrics are measured.

Each task is an entry of the TASKS catalog (``kiln.tasks.catalog``), named by ``DataSpec.task``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.tasks.base import Meter, Task
from kiln.tasks.catalog import TASKS

if TYPE_CHECKING:
    from kiln.config.schema import LossConfig
    from kiln.data.spec import DataSpec

__all__ = ["TASKS", "Meter", "Task", "build_task"]


def build_task(spec: DataSpec, loss_cfg: LossConfig) -> Task:
    """The TASKS entry for ``spec.task`` (imported on first use: ``import kiln.tasks`` stays light)."""
    return TASKS.build(spec.task, spec, loss_cfg)
