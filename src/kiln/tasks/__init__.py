"""Tasks: what a batch is, which loss applies and which metrics are measured."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.tasks.base import Meter, Task

if TYPE_CHECKING:
    from kiln.config.schema import LossConfig
    from kiln.data.spec import DataSpec

__all__ = ["Meter", "Task", "build_task"]


def build_task(spec: DataSpec, loss_cfg: LossConfig) -> Task:
    """The task for a DataSpec (imported lazily: ``import kiln.tasks`` stays light)."""
    if spec.task == "language_modeling":
        from kiln.tasks.language_modeling import LanguageModelingTask

        return LanguageModelingTask(spec, loss_cfg)
    from kiln.tasks.supervised import SupervisedTask

    return SupervisedTask(spec, loss_cfg)
