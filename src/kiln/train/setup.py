"""Build everything a run needs from its config: data, model, loaders, optimizer, callbacks, logs.

Kept apart from the loop so the Trainer only runs the loop and dispatches events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kiln.checkpoint import CheckpointManager
from kiln.config.loader import config_hash, to_yaml
from kiln.config.schema import KilnConfig
from kiln.data.fingerprint import fingerprint
from kiln.data.images.preprocess import SPEC_KEY as PREPROCESS_KEY
from kiln.data.loader import LoaderKnobs, loader_knobs, make_loader
from kiln.data.spec import DataBundle, DataSpec
from kiln.distributed.group import world
from kiln.runs.environment import capture_environment, run_tags
from kiln.runs.layout import RunPaths, create_run_dir, read_json, write_json, write_text
from kiln.tasks import Task, build_task
from kiln.tracking.jsonl import JsonlTracker
from kiln.tracking.multi import MultiTracker, build_trackers
from kiln.train.backends import channels_last
from kiln.train.callback import Callback
from kiln.train.callbacks import (
    EarlyStopping,
    EpochLines,
    LRSchedule,
    NanGuard,
    ProgressBar,
    TrackingCallback,
)
from kiln.train.callbacks.checkpointing import Checkpointing
from kiln.train.callbacks.fine_tune import fine_tuning
from kiln.train.callbacks.system_metrics import SystemMetrics
from kiln.train.optim import build_optimizer, build_scheduler
from kiln.train.precision import Amp
from kiln.train.ranks.scaling import batch_plan
from kiln.train.sampler import EpochSampler


@dataclass
class Components:
    """The built pieces of one run."""

    config: KilnConfig
    config_hash: str
    device: torch.device
    spec: DataSpec
    model: nn.Module
    task: Task
    optimizer: torch.optim.Optimizer
    sampler: EpochSampler
    train_loader: DataLoader[Any]
    val_loader: DataLoader[Any] | None
    test_loader: DataLoader[Any] | None
    paths: RunPaths
    tracker: MultiTracker
    checkpoints: CheckpointManager | None
    amp: Amp  # training.precision as trained: autocast, and fp16's loss scaler (checkpointed)
    callbacks: list[Callback] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    train_model: nn.Module | None = None  # the DDP wrapper the loop trains through (several processes)


def _optional_loader(
    dataset: Dataset[Any] | None, batch_size: int, workers: int, knobs: LoaderKnobs
) -> DataLoader[Any] | None:
    if dataset is None or len(dataset) == 0:  # type: ignore[arg-type]
        return None
    return make_loader(dataset, batch_size, workers, **knobs)


def new_run_dir(cfg: KilnConfig) -> RunPaths:
    """Create the run directory and write the resolved config with its hash."""
    paths = create_run_dir(cfg.run.output_dir, cfg.run.name)
    write_config(paths, cfg)
    return paths


def write_config(paths: RunPaths, cfg: KilnConfig) -> str:
    digest = config_hash(cfg)
    write_text(paths.config, f"# config_hash: sha256:{digest}\n" + to_yaml(cfg))
    return digest


def build_components(
    cfg: KilnConfig,
    data: DataBundle,
    model: nn.Module,
    device: torch.device,
    paths: RunPaths,
    extra_callbacks: Sequence[Callback],
    show_progress: str | None,  # "bar" on a terminal, "lines" elsewhere, None: nothing
) -> Components:
    """Wire up a run in ``paths``: loaders, optimizer, trackers, checkpoints and callbacks."""
    model.to(device)
    if channels_last(cfg.model):  # before the optimizer is built: it keeps these very tensors
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    task = build_task(data.spec, cfg.training.loss)
    task.to(device)
    t = cfg.training
    workers = cfg.data.num_workers
    # Several processes (torchrun): each trains on its shard, only rank 0 writes (kiln.train.ranks).
    rank = world()
    plan = batch_plan(cfg, rank.size)
    if rank.distributed:
        from kiln.train.ranks.meters import ReducingTask

        task = ReducingTask(task)  # metrics are reduced over ranks as sums before they are logged
    # A dataset with per-sample randomness (augmentation) is told each sample's epoch by its key.
    keyed = bool(getattr(data.train, "epoch_keys", False))
    sampler = EpochSampler(len(data.train), cfg.run.seed, rank=rank.rank, world_size=rank.size, keyed=keyed)  # type: ignore[arg-type]
    knobs = loader_knobs(cfg.data, device)
    train_loader = make_loader(data.train, plan.per_process_batch, workers, sampler, **knobs)
    optimizer = build_optimizer(model, t)
    for group in optimizer.param_groups:  # distributed.lr_scaling (factor 1 unless asked for)
        group["lr"] *= plan.lr_factor
    steps_per_epoch = -(-len(train_loader) // t.grad_accum)
    total_steps = t.max_steps if t.max_steps is not None else steps_per_epoch * t.epochs
    scheduler = build_scheduler(optimizer, t.scheduler, total_steps)

    digest = config_hash(cfg)
    # A resumed run keeps the environment it was started with; capturing it (every package's
    # metadata) again would only be thrown away.
    resumed = paths.environment.exists()
    environment = read_json(paths.environment) if resumed else (
        capture_environment(cfg.run.seed, str(device)) if rank.is_zero else {}
    )
    environment["config_hash"] = digest
    environment["data_fingerprint"] = fingerprint(data)
    if rank.is_zero:
        if not resumed:
            write_json(paths.environment, environment)
        jsonl = JsonlTracker(paths.events)
        factories = build_trackers(cfg, paths.logs, paths.root.name, run_tags(environment, paths))
        tracker = MultiTracker(jsonl, factories, cfg.tracking.queue_size)
        if not resumed:
            _write_data_records(data, paths, tracker)
    else:
        from kiln.train.ranks.rank_zero import NullTracker

        tracker = NullTracker()

    c = Components(
        cfg, digest, device, data.spec, model, task, optimizer, sampler, train_loader,
        _optional_loader(data.val, t.eval_batch_size, workers, knobs),
        _optional_loader(data.test, t.eval_batch_size, workers, knobs),
        paths, tracker, None, Amp(t.precision, device), environment=environment,
    )
    if rank.distributed:
        from kiln.distributed.ddp import wrap_model
        from kiln.train.ranks.agreement import SignalAgreement
        from kiln.train.ranks.meters import shard_loader

        c.val_loader, c.test_loader = shard_loader(c.val_loader), shard_loader(c.test_loader)
        c.train_model = wrap_model(model, device)
        c.callbacks.append(SignalAgreement())
    c.callbacks.append(NanGuard(cfg.tracking.log_every_n_steps))
    c.callbacks.extend(fine_tuning(cfg, rank.distributed))  # model.freeze: backbone (+ training.unfreeze_at_epoch)
    if scheduler is not None:
        c.callbacks.append(LRSchedule(scheduler, t.scheduler))
    if t.early_stopping is not None:
        c.callbacks.append(EarlyStopping(t.early_stopping))
    if t.eval_every_n_steps is not None:
        c.callbacks.append(_step_evaluation(c))
    c.callbacks.extend(extra_callbacks)
    if cfg.checkpoint.enabled:
        c.checkpoints = _checkpoint_manager(cfg, paths, rank.is_zero)
        c.callbacks.append(_checkpointing(c, jsonl.tell if rank.is_zero else lambda: 0))
    c.callbacks.append(TrackingCallback(tracker, cfg.tracking.log_every_n_steps, cfg.model_dump(mode="json")))
    if cfg.tracking.system_metrics and rank.is_zero:
        c.callbacks.append(SystemMetrics(tracker, cfg.tracking.system_metrics_interval))
    if show_progress == "bar":
        c.callbacks.append(ProgressBar())
    elif show_progress == "lines":
        c.callbacks.append(EpochLines())
    return c


def _write_data_records(data: DataBundle, paths: RunPaths, tracker: MultiTracker) -> None:
    """At the start of a new run: the dataset's report (per-split, per-class counts, skipped
    files) as ``data_report.json``, and for image data a grid of training samples as they reach
    the model (augmented, epoch 0) as ``preview.png``, handed to the trackers (MLflow keeps it).
    Neither draws from the global RNG, so the run trains exactly as without them."""
    report = getattr(data, "report", None)
    if report is not None:
        write_json(paths.data_report, report)
    train = data.train
    if PREPROCESS_KEY in data.spec.extra or getattr(train, "epoch_keys", False) or getattr(train, "augment", None):
        from kiln.data.images.preview import preview_from_bundle

        tracker.log_artifact(preview_from_bundle(data, paths.preview))


def _step_evaluation(c: Components) -> Callback:
    from kiln.errors import ConfigError
    from kiln.train.callbacks.step_eval import StepEvaluation

    t = c.config.training
    if c.val_loader is None or t.eval_every_n_steps is None:
        raise ConfigError(
            "training.eval_every_n_steps needs a validation split; set data.val_fraction > 0 "
            "or unset training.eval_every_n_steps"
        )
    return StepEvaluation(
        t.eval_every_n_steps, t.eval_batches, c.val_loader, c.task, c.device, t.precision,
        c.tracker, c.paths.logs / "samples.jsonl" if world().is_zero else None,  # rank 0 writes
    )


def _checkpoint_manager(cfg: KilnConfig, paths: RunPaths, writes: bool = True) -> CheckpointManager:
    k = cfg.checkpoint
    if not writes:  # ranks other than 0 take part in capturing a checkpoint but write nothing
        from kiln.train.ranks.rank_zero import NullCheckpointManager

        return NullCheckpointManager(paths.checkpoints, k.mode)
    return CheckpointManager(paths.checkpoints, k.keep_best_n, k.keep_last_n, k.mode, k.async_save)


def _checkpointing(c: Components, events_offset: Callable[[], int]) -> Checkpointing:
    from kiln.train import snapshot

    assert c.checkpoints is not None
    git = c.environment.get("git", {})

    def meta() -> dict[str, Any]:
        return {
            "config_hash": c.config_hash,
            "git_commit": git.get("commit"),
            "timestamp": time.time(),
            "events_offset": events_offset(),
        }

    return Checkpointing(
        c.config.checkpoint, c.checkpoints, lambda state: snapshot.capture(c, state), meta,
        log_event=c.tracker.log_event,
    )
