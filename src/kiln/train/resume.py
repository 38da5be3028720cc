"""Plan the resume of a run directory: its newest valid checkpoint, whether work is left, and
refusing config changes that would make the resumed run differ from the one that was started
(which changes are safe is declared on the schema's fields: :mod:`kiln.config.changes`). A run
stopped before its first checkpoint is never a dead end: it starts over from step 0 in its own
directory (``ResumePlan.starts_over``; how its logs are cut back: :func:`kiln.train.run.start_over`).

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
    """What resuming will do: the config to continue with and the checkpoint to start from; or,
    when the run stopped before its first checkpoint, neither (``starts_over``: it trains again
    from step 0 in its own directory); or, when there is nothing left to do, why
    (``finished_message``) and how the run ended."""

    run_dir: Path
    config: KilnConfig
    checkpoint: Checkpoint | None
    finished_message: str | None  # set when there is nothing left to do
    summary: RunSummary | None = None  # the run's summary.json, when it wrote one (finished or stopped)

    @property
    def starts_over(self) -> bool:
        """No checkpoint to continue from, and work left: the run trains again from step 0."""
        return self.checkpoint is None and self.finished_message is None


def config_differences(old: KilnConfig, new: KilnConfig) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every setting that differs."""
    return differences(old.model_dump(mode="json"), new.model_dump(mode="json"))


def unsafe_changes(old: KilnConfig, new: KilnConfig) -> list[tuple[str, Any, Any]]:
    """The differences a resume refuses: every setting not declared safe to change on resume."""
    return [d for d in config_differences(old, new) if not resume_safe(d[0])]


def refuse_changes(run_dir: Path, unsafe: Sequence[tuple[str, Any, Any]], advice: str) -> ConfigError:
    """The error refusing to continue ``run_dir`` with a changed config, listing the changes."""
    lines = "\n".join(f"  - {key}: {a!r} -> {b!r}" for key, a, b in unsafe)
    return ConfigError(
        f"refusing to resume {run_dir.name} with a changed config; these changes would make "
        f"the resumed run differ from the one that was started:\n{lines}\n{advice}"
    )


def resolve_run_dir(path: str | Path) -> Path:
    """The run directory ``path`` names, also when given one of its checkpoints or its
    checkpoints/ folder; PathError naming what is missing otherwise."""
    return RunDir.open(path, up=2).root


def plan_resume(path: str | Path, overrides: Sequence[str] = (), allow_config_change: bool = False) -> ResumePlan:
    """Check the config, find the newest valid checkpoint and decide whether there is work left.

    A run stopped before its first checkpoint (killed during start-up or its first epoch, or
    trained with checkpoint.enabled=false) and not finished starts over: the plan has neither a
    checkpoint nor a finished message (``starts_over``).
    """
    run = RunDir.open(path, up=2)
    run_dir = run.root
    new = run.read_config(overrides)
    unsafe = unsafe_changes(run.read_config(), new)
    if unsafe and not allow_config_change:
        raise refuse_changes(run_dir, unsafe, "Pass --allow-config-change to resume anyway.")
    summary = run.read_summary_if_any()  # none: the run was killed before it could write one
    status = summary.status if summary is not None else None
    if summary is not None and status in ("stopped_early", "failed"):
        return ResumePlan(run_dir, new, None, f"{run_dir.name} already finished ({status}: {summary.stop_reason}); nothing to resume", summary)
    checkpoint = _newest_checkpoint(run, new)
    if checkpoint is None:
        if status == "completed":  # trained to the end without checkpoints: nothing to continue
            return _completed_without_checkpoint(run, new, summary)
        return ResumePlan(run_dir, new, None, None, summary)  # starts over from step 0
    for problem in checkpoint.meta.get("skipped", []):
        log.warning("skipped a broken checkpoint: %s", problem)
    done_epochs = int(checkpoint.meta["epoch"])
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
    return ResumePlan(run_dir, new, checkpoint, None, summary)


def _newest_checkpoint(run: RunDir, config: KilnConfig) -> Checkpoint | None:
    """The newest checkpoint that verifies; None when none was ever committed (broken ones only:
    CheckpointError, since starting over would throw away what may still be repaired)."""
    if not run.checkpoints.is_dir():
        return None
    return CheckpointManager(run.checkpoints, 1, 1, config.checkpoint.mode).load_latest()


def _completed_without_checkpoint(run: RunDir, new: KilnConfig, summary: RunSummary | None) -> ResumePlan:
    """A run that completed with checkpointing off: finished, unless asked to train longer,
    which needs a checkpoint to continue from."""
    assert summary is not None
    done = summary.global_step if new.training.max_steps is not None else summary.epochs_trained
    wanted = new.training.max_steps if new.training.max_steps is not None else new.training.epochs
    unit = "steps" if new.training.max_steps is not None else "epochs"
    if done >= wanted:
        return ResumePlan(run.root, new, None, f"{run.root.name} already finished all {done} {unit}; nothing to resume", summary)
    raise CheckpointError(
        f"{run.root.name} finished {done} {unit} without writing a checkpoint (checkpoint.enabled="
        f"false), so it cannot train on to {wanted}; start a new run with `kiln train`"
    )
