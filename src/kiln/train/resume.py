"""Plan the resume of a run directory: its newest valid checkpoint, whether work is left, and
refusing config changes that would make the resumed run differ from the one that was started
(which changes are safe is declared on the schema's fields: :mod:`kiln.config.changes`).

``kiln.resume`` (:mod:`kiln.train.resume_run`) plans and trains; plan alone to look first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.checkpoint import Checkpoint, CheckpointManager
from kiln.config.changes import differences, resume_safe
from kiln.config.schema import KilnConfig
from kiln.errors import CheckpointError, ConfigError
from kiln.runs.rundir import RunDir
from kiln.runs.summary import RunSummary

log = logging.getLogger("kiln")


@dataclass(frozen=True)
class ResumePlan:
    """What resuming will do: the config to continue with and the checkpoint to start from, or,
    when there is nothing left to do, why (``finished_message``) and how the run ended."""

    run_dir: Path
    config: KilnConfig
    checkpoint: Checkpoint | None
    finished_message: str | None  # set when there is nothing left to do
    summary: RunSummary | None = None  # the finished run's summary (None: not finished, or not read here)


def config_differences(old: KilnConfig, new: KilnConfig) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every setting that differs."""
    return differences(old.model_dump(mode="json"), new.model_dump(mode="json"))


def unsafe_changes(old: KilnConfig, new: KilnConfig) -> list[tuple[str, Any, Any]]:
    """The differences a resume refuses: every setting not declared safe to change on resume."""
    return [d for d in config_differences(old, new) if not resume_safe(d[0])]


def resolve_run_dir(path: str | Path) -> Path:
    """A resumable run directory, also when given one of its checkpoints or its checkpoints/
    folder; PathError naming what is missing otherwise."""
    return RunDir.open(path, ("checkpoints",), up=2).root


def plan_resume(path: str | Path, overrides: Sequence[str] = (), allow_config_change: bool = False) -> ResumePlan:
    """Check the config, find the newest valid checkpoint and decide whether there is work left."""
    run = RunDir.open(path, ("checkpoints",), up=2)
    run_dir = run.root
    new = run.read_config(overrides)
    unsafe = unsafe_changes(run.read_config(), new)
    if unsafe and not allow_config_change:
        lines = "\n".join(f"  - {key}: {a!r} -> {b!r}" for key, a, b in unsafe)
        raise ConfigError(
            f"refusing to resume {run_dir.name} with a changed config; these changes would make "
            f"the resumed run differ from the one that was started:\n{lines}\n"
            "Pass --allow-config-change to resume anyway."
        )
    summary = run.read_summary_if_any()  # none: the run was killed before it could write one
    manager = CheckpointManager(run.checkpoints, 1, 1, new.checkpoint.mode)
    checkpoint = manager.load_latest()
    if checkpoint is None:
        raise CheckpointError(
            f"{run_dir.name} has no checkpoint to resume from (in {run.checkpoints}). "
            "Checkpoints are written every epoch unless checkpoint.enabled=false or "
            "checkpoint.every_n_epochs=null; start a new run with `kiln train`"
        )
    for problem in checkpoint.meta.get("skipped", []):
        log.warning("skipped a broken checkpoint: %s", problem)
    status = summary.status if summary is not None else None
    done_epochs = int(checkpoint.meta["epoch"])
    if summary is not None and status in ("stopped_early", "failed"):
        return ResumePlan(run_dir, new, None, f"{run_dir.name} already finished ({status}: {summary.stop_reason}); nothing to resume", summary)
    max_steps, done_steps = new.training.max_steps, int(checkpoint.meta["global_step"])
    if status == "completed" and max_steps is not None and done_steps >= max_steps:
        return ResumePlan(
            run_dir, new, None,
            f"{run_dir.name} already finished all {done_steps} steps; nothing to resume "
            f"(to train longer: kiln resume {run_dir} training.max_steps=N)", summary,
        )
    if status == "completed" and max_steps is None and done_epochs >= new.training.epochs:
        return ResumePlan(
            run_dir, new, None,
            f"{run_dir.name} already finished all {done_epochs} epochs; nothing to resume "
            f"(to train longer: kiln resume {run_dir} training.epochs=N)", summary,
        )
    return ResumePlan(run_dir, new, checkpoint, None)
