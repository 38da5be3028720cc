"""Steps the learning-rate scheduler: per optimizer step (cosine), per epoch (step) or on a plateau."""

from __future__ import annotations

from typing import Any

import torch
from typing_extensions import override

from kiln.config.schema import SchedulerConfig
from kiln.train.callback import Callback
from kiln.train.callbacks.monitor import Monitor
from kiln.train.state import TrainState

Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


class LRSchedule(Callback):
    def __init__(self, scheduler: Scheduler, cfg: SchedulerConfig) -> None:
        self.scheduler = scheduler
        self.cfg = cfg
        self.per_step = cfg.name in ("cosine", "warmup_cosine")

    @override
    def on_batch_end(self, state: TrainState) -> None:
        if self.per_step and state.optimizer_stepped:
            self.scheduler.step()  # type: ignore[call-arg]

    @override
    def on_epoch_end(self, state: TrainState) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # Monitor.value checks the metric exists and lists the ones that do.
            value = Monitor(self.cfg.monitor, self.cfg.mode).value(
                state.metrics, "training.scheduler"
            )
            self.scheduler.step(value)
        elif not self.per_step:
            self.scheduler.step()

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    @override
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
