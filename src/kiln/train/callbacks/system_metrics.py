"""Runs the system-metrics sampler for the duration of a fit."""

from __future__ import annotations

from typing_extensions import override

from kiln.tracking.multi import MultiTracker
from kiln.tracking.system import SystemMonitor
from kiln.train.callback import Callback
from kiln.train.state import TrainState


class SystemMetrics(Callback):
    def __init__(self, tracker: MultiTracker, interval: float) -> None:
        self.tracker = tracker
        self.interval = interval
        self.monitor: SystemMonitor | None = None

    @override
    def on_fit_start(self, state: TrainState) -> None:
        self.monitor = SystemMonitor(self.tracker, self.interval, lambda: state.global_step)
        self.monitor.start()

    @override
    def on_fit_end(self, state: TrainState) -> None:
        self._stop()

    @override
    def on_exception(self, state: TrainState) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
