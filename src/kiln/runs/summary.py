"""``summary.json``: the outcome of a run in one small typed record.

The Trainer writes it when a run ends (completed, stopped early, failed, interrupted or crashed);
``kiln eval``, ``kiln gate``, the registry, sweeps and the CLI read it as a :class:`RunSummary`,
never as a dict. Reading tolerates what earlier kiln versions wrote: keys it does not know are
ignored, keys added since (``max_steps``, ``batch``, ``glibc_malloc``, ``flush_denormal``,
``registry``, ``precision``, ``compile``) read as None, and the old empty ``best: {}`` reads as no best epoch.

>>> summary = RunSummary.read(Path("runs/digits_mlp_20261123_101500/summary.json"))  # doctest: +SKIP
>>> summary.status, summary.best.epoch if summary.best else None, summary.test["test_accuracy"]  # doctest: +SKIP
('stopped_early', 7, 0.9722)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from kiln.errors import RunError
from kiln.runs.layout import read_json, write_json

# How a run ended. "running" only while it trains: no summary.json is written then.
Status = Literal["running", "completed", "stopped_early", "failed", "interrupted", "crashed"]
FINISHED: tuple[Status, ...] = ("completed", "stopped_early")  # ended as asked: the model is usable
Metrics = dict[str, int | float]  # one epoch's or the test split's values, by name (NaN kept)


class Record(BaseModel):
    """A part of summary.json: immutable; unknown keys (from other kiln versions) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class BestEpoch(Record):
    """The epoch with the best monitored value, and everything measured at its end."""

    monitor: str  # the metric compared (training.early_stopping.monitor, else val_loss)
    mode: Literal["min", "max"]  # whether lower or higher was better
    value: float  # its best value
    epoch: int  # 1-based
    metrics: Metrics  # that epoch's metrics, as in the history


class Durations(Record):
    total_s: float  # wall-clock seconds of the whole fit, from prepare to the summary
    epoch_median_s: float | None  # median seconds of an epoch (None: no epoch finished)


class Trackers(Record):
    used: list[str]  # the backends the run was tracked with, events.jsonl's "jsonl" first
    failed: dict[str, str]  # backend -> why it stopped (its backlog is in events.jsonl: kiln sync)


class Batch(Record):
    """What one optimizer step meant (kiln.train.ranks.scaling.BatchPlan, as recorded)."""

    world_size: int  # processes that trained
    batch_size_mode: str  # distributed.batch_size: per_process | global
    per_process_batch: int  # samples per micro-batch on each process
    grad_accum: int  # micro-batches per optimizer step
    effective_batch: int  # samples per optimizer step over all processes
    lr_scaling: str  # distributed.lr_scaling: none | linear | sqrt
    lr_factor: float  # the learning rate's multiplier from that scaling
    base_lr: float  # training.lr
    lr: float  # the learning rate trained with


class Precision(Record):
    """training.precision and what it trained with (kiln.train.precision)."""

    requested: str  # training.precision: fp32 | bf16 | fp16 | auto
    resolved: str  # what the forward pass autocast to: fp32 | bf16 | fp16
    tf32: bool  # whether run.tf32 took effect (on for it, and a CUDA card of Ampere or later)
    amp_skipped_steps: int | None  # fp16: optimizer steps the loss scaler skipped (None otherwise)


class Compile(Record):
    """training.compile's outcome (kiln.train.compiling)."""

    mode: str  # training.compile: false | default | reduce-overhead | max-autotune
    compiled: bool  # whether the run ended training through the compiled module
    seconds: float  # compile_seconds: time of the steps that compiled (not in samples_per_sec)
    error: str | None  # why compiling failed and the run trained eagerly, when it did


class RunSummary(Record):
    """Every key of summary.json. ``RunSummary.read(path)`` reads one; ``write(path)`` writes it."""

    run: str  # the run directory's name, <name>_<YYYYmmdd_HHMMSS>
    run_dir: str  # the run directory as the Trainer saw it (relative when run.output_dir was)
    status: Status  # how it ended
    stop_reason: str | None  # why it stopped before its epochs or steps were done, in words
    stopped_early: bool  # status == "stopped_early" (early stopping, or a callback's request)
    epochs_trained: int  # epochs finished (resumed runs count their earlier ones too)
    max_epochs: int  # training.epochs
    global_step: int  # optimizer steps taken
    max_steps: int | None = None  # training.max_steps: set for a step-based run (epochs then ignored)
    best_epoch: int | None  # best.epoch, kept at the top for tables
    best: BestEpoch | None  # None when the monitored metric was never measured
    restored_best_epoch: int | None  # the epoch whose weights early stopping restored, if it did
    final: Metrics  # the last finished epoch's metrics ({} when none finished)
    test: Metrics  # test-split metrics of the final weights ({} without a test split or when stopped)
    parameters: int  # trainable and frozen parameters of the model
    batch: Batch | None = None  # world size, per-process and effective batch, lr scaling
    config_hash: str  # sha256 of the resolved config (config.yaml), as in the checkpoints
    last_checkpoint: str | None  # the newest checkpoint written (None: checkpointing off)
    durations: Durations
    started_at: str  # ISO 8601, UTC
    finished_at: str  # ISO 8601, UTC
    trackers: Trackers
    glibc_malloc: str | None = None  # run.keep_freed_memory's outcome, e.g. "kept: ..."
    flush_denormal: bool | None = None  # whether denormals were flushed to zero while training
    precision: Precision | None = None  # the precision asked for and trained with, TF32, fp16's skips
    compile: Compile | None = None  # training.compile: compiled or not (and why), compile_seconds
    error: str | None = None  # "Type: message" of the exception that crashed the run
    registry: dict[str, Any] | None = None  # tracking.register's outcome (version, alias, gates)

    @field_validator("best", mode="before")
    @classmethod
    def _no_best(cls, value: Any) -> Any:
        return value or None  # earlier kiln wrote an empty object for "no best epoch"

    @property
    def finished(self) -> bool:
        """Whether the run ended as asked (completed or stopped early): its model is usable."""
        return self.status in FINISHED

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        """The summary in ``path``; PathError when it is missing, RunError naming the file and the
        bad keys when it is not a summary kiln wrote."""
        data = read_json(path)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            raise RunError(f"{path} is not a run summary kiln can read: {problems}") from None

    def write(self, path: Path) -> None:
        """Write atomically, key order as declared; NaN metrics stay NaN (JSON's NaN, as before)."""
        write_json(path, self.model_dump())
