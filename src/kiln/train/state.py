"""TrainState: everything the loop knows, handed to every callback hook."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from kiln.config.schema import KilnConfig
    from kiln.data.spec import DataSpec


@dataclass
class TrainState:
    """The loop's counters, its control requests, and the objects callbacks may act on.

    Counters (``epoch``, ``global_step``, ``batch_in_epoch``, ``samples_seen``) and ``history``
    are checkpointed; the objects are rebuilt from the config on resume. Callbacks steer the loop
    only through the typed requests below (``request_stop``, ``request_checkpoint``, ``failed``);
    the loop reads nothing from ``extras``, which only carries facts on to summary.json and the
    trackers.
    """

    config: KilnConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    spec: DataSpec
    run_dir: Path
    steps_per_epoch: int
    epoch: int = 0  # the current (0-based) epoch
    global_step: int = 0  # optimizer steps taken so far
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    samples_seen: int = 0
    # loss of the last batch, on the device: reading it waits for the device, so only logging
    # steps and the NaN guard's checks do (kiln.train.callbacks.nan_guard)
    batch_loss: torch.Tensor | None = None
    optimizer_stepped: bool = False  # whether the last batch ended with an optimizer step
    train_meter: Any = None  # the current epoch's training metric sums (a kiln.tasks.Meter)
    metrics: dict[str, float] = field(default_factory=dict)  # the latest epoch's metrics
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per finished epoch
    # -- requests to the loop (never checkpointed: a resumed run starts with none pending) --
    stop_requested: bool = False
    stop_reason: str | None = None
    checkpoint_reason: str | None = None  # set by request_checkpoint; None: no checkpoint pending
    stop_signal: int | None = None  # SIGINT/SIGTERM received: checkpoint, then TrainingInterrupted
    failed: bool = False  # a callback judged the run broken (the NaN guard): it ends "failed"
    # -- outcomes --
    last_checkpoint: Path | None = None  # the newest checkpoint this process wrote
    status: str = "running"  # running | completed | stopped_early | failed | interrupted
    error: BaseException | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # facts for summary.json and trackers

    @property
    def checkpoint_requested(self) -> bool:
        """Whether a checkpoint is pending: the loop writes it at its next checkpoint point."""
        return self.checkpoint_reason is not None

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current batch (first reason wins)."""
        if not self.stop_requested:
            self.stop_requested = True
            self.stop_reason = reason

    def request_checkpoint(self, reason: str) -> None:
        """Ask the loop for a checkpoint at its next checkpoint point (after this batch, or after
        this epoch when asked at epoch end). ``reason`` is recorded in the checkpoint's meta.json
        ("periodic", "last", "signal", or your own); a later request before the save renames it."""
        self.checkpoint_reason = reason

    def interrupt(self, signum: int) -> None:
        """A graceful stop by signal: stop after this step, checkpoint, raise TrainingInterrupted."""
        import signal

        self.stop_signal = signum
        self.request_stop(f"received {signal.Signals(signum).name}: stopping after the current step")

    def counters(self) -> dict[str, Any]:
        """The loop position, as plain data for checkpoints and logs."""
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "batch_in_epoch": self.batch_in_epoch,
            "samples_seen": self.samples_seen,
            "history": self.history,
        }

    def load_counters(self, data: dict[str, Any]) -> None:
        self.epoch = int(data["epoch"])
        self.global_step = int(data["global_step"])
        self.batch_in_epoch = int(data["batch_in_epoch"])
        self.samples_seen = int(data["samples_seen"])
        self.history = list(data["history"])
        self.metrics = dict(self.history[-1]) if self.history else {}
