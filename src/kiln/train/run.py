"""The steps around the loop: prepare a run (new or resumed), test, save the model and summary."""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.config.model_options import TargetModel
from kiln.config.schema import KilnConfig
from kiln.data.build import build_data
from kiln.data.images.recorded import write_splits
from kiln.data.spec import DataBundle
from kiln.distributed.group import is_rank_zero, seed_rank
from kiln.models.build import build_model, count_parameters
from kiln.models.package import save_model_package
from kiln.runs.layout import RunPaths
from kiln.runs.summary import FINISHED, RunSummary
from kiln.tracking.jsonl import read_events
from kiln.train import snapshot
from kiln.train.allocator import keep_freed_memory
from kiln.train.callback import Callback
from kiln.train.evaluate import evaluate
from kiln.train.ranks.group import join_group
from kiln.train.ranks.rundir import shared_run_dir
from kiln.train.ranks.scaling import batch_plan
from kiln.train.reference import save_reference
from kiln.train.rng import resolve_device, seed_everything
from kiln.train.setup import Components, build_components, write_config
from kiln.train.start_over import new_or_fixed_run_dir, start_over_in
from kiln.train.state import TrainState
from kiln.train.summarize import build_summary

if TYPE_CHECKING:
    from torch import nn

    from kiln.checkpoint import Checkpoint

log = logging.getLogger("kiln")


@dataclass(frozen=True)
class ResumeFrom:
    """Continue the run in ``run_dir`` from ``checkpoint``, one of its checkpoints; with no
    checkpoint, train it from step 0 in ``run_dir`` (it stopped before its first one)."""

    run_dir: Path
    checkpoint: Checkpoint | None


@dataclass(frozen=True)
class Prepared:
    """A run ready for its loop, owned by the Trainer: the built parts and the state it starts from."""

    components: Components
    state: TrainState


def prepare(
    config: KilnConfig,
    model: nn.Module | None,
    data: DataBundle | None,
    resume: ResumeFrom | None,
    *,
    callbacks: Sequence[Callback] = (),
    quiet: bool = False,
) -> Prepared:
    """Seed, build data and model (unless given), set up the run directory (a new one, run.dir
    when set, or ``resume.run_dir``), wire the callbacks (``callbacks`` after the built-in ones),
    and restore ``resume.checkpoint`` last (without one, the run trains from step 0 in
    ``resume.run_dir``: :mod:`kiln.train.start_over`)."""
    cfg = config
    rank = join_group(cfg.distributed, cfg.run.device)  # joins torchrun's process group, if any
    seed_everything(cfg.run.seed)
    allocator = keep_freed_memory() if cfg.run.keep_freed_memory else "off (run.keep_freed_memory)"
    device = resolve_device(cfg.run.device)
    model_source = "object" if model is not None else "import" if isinstance(cfg.model, TargetModel) else "catalog"
    resuming = resume is not None and resume.checkpoint is not None
    if data is None:  # a resume continues on the splits its run recorded, whatever the folder holds now
        recorded = RunPaths(resume.run_dir).data_splits if resume is not None and resuming else None
        data = build_data(cfg.data, cfg.run.seed, recorded_splits=recorded)
    if model is None:  # resuming: the checkpoint holds the weights, so a backbone fetches none to start from
        model = build_model(cfg.model.for_loading() if resuming else cfg.model, data.spec)
    seed_rank(cfg.run.seed)  # other ranks draw their own dropout masks
    restarted: dict[str, Any] = {}  # what start_over dropped (rank 0, when the run starts over)
    if resume is None:
        paths = shared_run_dir(lambda: new_or_fixed_run_dir(cfg), cfg.run.output_dir)  # rank 0 creates it
    elif resume.checkpoint is None:
        where = resume.run_dir
        paths = shared_run_dir(lambda: start_over_in(where, cfg, restarted), cfg.run.output_dir)
    else:
        paths = RunPaths(resume.run_dir)
        if rank.is_zero:
            write_config(paths, cfg)
            cut_logs(paths, resume.checkpoint)
    # a bar on a terminal, a line per epoch elsewhere (CI logs); nothing with --quiet
    show_progress: str | None = None
    if cfg.run.progress and not quiet and rank.is_zero:
        show_progress = "bar" if _is_terminal() else "lines"
    c = build_components(cfg, data, model, device, paths, callbacks, show_progress)
    c.environment["model_source"] = model_source
    if rank.is_zero and (not resuming or not paths.data_splits.exists()):
        record_splits(c, data)
    state = TrainState(
        config=cfg,
        model=c.model,
        optimizer=c.optimizer,
        spec=c.spec,
        run_dir=c.paths.root,
        steps_per_epoch=len(c.train_loader),
    )
    state.extras["parameters"] = count_parameters(c.model)
    state.extras["started_at"] = _now()
    state.extras["batch"] = batch_plan(cfg, rank.size).to_dict()
    state.extras["glibc_malloc"] = allocator
    if restarted:
        c.tracker.log_event("restarted", restarted)
    if resume is not None and resume.checkpoint is not None:
        checkpoint = resume.checkpoint
        if rank.is_zero:
            c.tracker.replay(read_events(paths.events))
        snapshot.restore(c, state, checkpoint)  # last: it puts back the RNG states
        c.tracker.log_event("resumed", {
            "checkpoint": checkpoint.path.name, "epoch": state.epoch,
            "global_step": state.global_step, "batch_in_epoch": state.batch_in_epoch,
            "skipped_checkpoints": checkpoint.meta.get("skipped", []),
        })
    return Prepared(c, state)


def record_splits(c: Components, data: DataBundle) -> None:
    """Write the files of the run's splits to ``data_splits.csv`` (image data), which every later
    build of this run's data reads (:mod:`kiln.data.images.recorded`), and hand it to the trackers.
    Written by a new run and a run started over, which carved their splits; and by a resume of a
    run from before kiln recorded them, so its evaluation at least sees the splits it ended on."""
    if write_splits(data, c.paths.data_splits):
        c.tracker.log_artifact(c.paths.data_splits)


def cut_logs(paths: RunPaths, checkpoint: Checkpoint) -> None:
    """Cut events.jsonl back to where it was at the checkpoint and drop the logs derived from it
    (CSV, TensorBoard), which are rebuilt from it: every log then holds exactly one history."""
    offset = int(checkpoint.meta["events_offset"])
    if paths.events.exists() and paths.events.stat().st_size > offset:
        with paths.events.open("r+b") as f:
            f.truncate(offset)
    paths.csv_log.unlink(missing_ok=True)
    shutil.rmtree(paths.tensorboard, ignore_errors=True)
    paths.summary.unlink(missing_ok=True)


def test(c: Components, state: TrainState) -> dict[str, float]:
    """Metrics on the test split with the weights the model ends with (best, when restored)."""
    if c.test_loader is None:
        return {}
    metrics = evaluate(c.model, c.test_loader, c.task, c.device, c.config.training.precision)
    test_metrics = {f"test_{k}": v for k, v in metrics.items()}
    c.tracker.log_metrics(test_metrics, state.global_step, "test")
    return test_metrics


def finish(
    c: Components, state: TrainState, started: float, test_metrics: dict[str, float], save_model: bool = True
) -> RunSummary:
    """Save the model package and summary.json, hand artifacts to the trackers, close them (within
    tracking.close_timeout), then register the model when tracking.register asks for it."""
    if not is_rank_zero():  # the other ranks of a distributed run write nothing
        return build_summary(c, state, started, test_metrics)
    if c.checkpoints is not None:
        c.checkpoints.close()  # waits for an asynchronous save to commit
    if save_model:
        save_model_package(
            c.paths.models, c.model, c.config.model, c.spec,
            {"source": c.environment["model_source"], "config_hash": c.config_hash, "run": c.paths.root.name},
        )
        save_reference(c)  # for drift monitoring: kiln.train.reference
    summary = build_summary(c, state, started, test_metrics)
    try:
        summary.write(c.paths.summary)
    except OSError as exc:
        if save_model:
            raise
        # The run already failed, most likely on this same full disk: its own error says why.
        log.warning("could not write %s (%s): the error below says why the run stopped",
                    c.paths.summary, exc.strerror or exc)
    c.tracker.log_event("summary", {"status": state.status, "test": test_metrics})
    for path in (c.paths.config, c.paths.summary, c.paths.environment, c.paths.csv_log):
        c.tracker.log_artifact(path)
    if save_model and c.config.tracking.log_model and "mlflow" in c.config.tracking.backends:
        c.tracker.log_model(copy.deepcopy(c.model).cpu().eval(), c.paths.models, _example(c))
    # The MLflow worker gives up after close_timeout by itself; a little slack to hear it do so.
    c.tracker.close(state.status, timeout=c.config.tracking.close_timeout + 10)
    if c.tracker.failures != summary.trackers.failed:  # a tracker found dead while draining
        trackers = summary.trackers.model_copy(update={"failed": dict(c.tracker.failures)})
        summary = summary.model_copy(update={"trackers": trackers})
        with contextlib.suppress(OSError):  # a full disk was reported when it was first written
            summary.write(c.paths.summary)
    register = c.config.tracking.register
    if register is not None and save_model and state.status in FINISHED:
        summary = summary.model_copy(update={"registry": _register(c, register)})
        summary.write(c.paths.summary)
    return summary


def _register(c: Components, register: Any) -> dict[str, Any]:
    """Register the model; a registry that cannot be reached is reported, not fatal to the run."""
    from kiln.errors import KilnError
    from kiln.registry import register_run

    if "mlflow" in c.tracker.failures or "mlflow" not in c.config.tracking.backends:
        reason = c.tracker.failures.get("mlflow", "tracking.backends has no mlflow")
        log.warning("not registering %s: MLflow was not available (%s)", register.name, reason)
        return {"registered": False, "error": reason}
    try:
        result = register_run(
            c.paths.root, register.name, alias=register.alias, require=register.require,
            source="tracking.register",
        )
    except KilnError as exc:
        log.warning("registering %s failed: %s", register.name, exc)
        return {"registered": False, "error": str(exc)}
    return result.to_dict()


def _example(c: Components) -> Any:
    """Two real input samples (as a NumPy array of the spec's dtype) for the MLflow signature and input example."""
    import numpy as np

    loader = c.test_loader or c.val_loader or c.train_loader
    dataset = loader.dataset
    samples = [c.task.split_batch(dataset[i])[0] for i in range(min(2, len(dataset)))]  # type: ignore[arg-type]
    return np.stack([s.cpu().numpy() for s in samples]).astype(c.spec.input_dtype)  # LM: int64 ids


def _is_terminal() -> bool:
    import sys

    return sys.stdout.isatty()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
