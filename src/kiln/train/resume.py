"""Resume a run directory from its newest valid checkpoint, refusing unsafe config changes."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.checkpoint import Checkpoint, CheckpointManager
from kiln.config.loader import load_config
from kiln.config.schema import KilnConfig
from kiln.errors import CheckpointError, ConfigError, KilnError
from kiln.runs.layout import RunPaths
from kiln.tracking.base import flatten

log = logging.getLogger("kiln")

# Changes that cannot make the resumed run differ from what the checkpoint started.
SAFE_CHANGES = (
    "training.epochs",
    "training.max_steps",
    "training.eval_batch_size",
    "run.progress",
    "data.num_workers",
    "tracking.",
    "checkpoint.keep_best_n",
    "checkpoint.keep_last_n",
    "checkpoint.every_n_epochs",
    "checkpoint.every_n_steps",
    "checkpoint.save_last",
    "checkpoint.async_save",
    "distributed.timeout",  # how long a collective waits, and which library carries it: same maths
    "distributed.backend",
)


@dataclass(frozen=True)
class ResumePlan:
    """What ``kiln resume`` will do: the config to continue with and the checkpoint to start from."""

    run_dir: Path
    config: KilnConfig
    checkpoint: Checkpoint | None
    finished_message: str | None  # set when there is nothing left to do


def config_differences(old: KilnConfig, new: KilnConfig) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every setting that differs."""
    a, b = flatten(old.model_dump(mode="json")), flatten(new.model_dump(mode="json"))
    return [(key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def resolve_run_dir(path: str | Path) -> Path:
    """A run directory, also when given one of its checkpoints or its checkpoints/ folder."""
    p = Path(path)
    for candidate in (p, p.parent, p.parent.parent):
        if (candidate / "config.yaml").is_file() and (candidate / "checkpoints").exists():
            return candidate
    if not p.exists():
        raise KilnError(f"{p} does not exist: pass a run directory (runs/<name>_<time>/)")
    raise KilnError(f"{p} is not a resumable run directory: it needs config.yaml and checkpoints/")


def plan_resume(path: str | Path, overrides: Sequence[str] = (), allow_config_change: bool = False) -> ResumePlan:
    """Check the config, find the newest valid checkpoint and decide whether there is work left."""
    run_dir = resolve_run_dir(path)
    paths = RunPaths(run_dir)
    old = load_config(paths.config)
    new = load_config(paths.config, overrides)
    unsafe = [d for d in config_differences(old, new) if not d[0].startswith(SAFE_CHANGES)]
    if unsafe and not allow_config_change:
        lines = "\n".join(f"  - {key}: {a!r} -> {b!r}" for key, a, b in unsafe)
        raise ConfigError(
            f"refusing to resume {run_dir.name} with a changed config; these changes would make "
            f"the resumed run differ from the one that was started:\n{lines}\n"
            "Pass --allow-config-change to resume anyway."
        )
    summary = _summary(paths)
    manager = CheckpointManager(paths.checkpoints, 1, 1, new.checkpoint.mode)
    checkpoint = manager.load_latest()
    if checkpoint is None:
        raise CheckpointError(
            f"{run_dir.name} has no checkpoint to resume from (in {paths.checkpoints}). "
            "Checkpoints are written every epoch unless checkpoint.enabled=false or "
            "checkpoint.every_n_epochs=null; start a new run with `kiln train`"
        )
    for problem in checkpoint.meta.get("skipped", []):
        log.warning("skipped a broken checkpoint: %s", problem)
    status = summary.get("status")
    done_epochs = int(checkpoint.meta["epoch"])
    if status == "stopped_early" or status == "failed":
        return ResumePlan(run_dir, new, None, f"{run_dir.name} already finished ({status}: {summary.get('stop_reason')}); nothing to resume")
    max_steps, done_steps = new.training.max_steps, int(checkpoint.meta["global_step"])
    if status == "completed" and max_steps is not None and done_steps >= max_steps:
        return ResumePlan(
            run_dir, new, None,
            f"{run_dir.name} already finished all {done_steps} steps; nothing to resume "
            f"(to train longer: kiln resume {run_dir} training.max_steps=N)",
        )
    if status == "completed" and max_steps is None and done_epochs >= new.training.epochs:
        return ResumePlan(
            run_dir, new, None,
            f"{run_dir.name} already finished all {done_epochs} epochs; nothing to resume "
            f"(to train longer: kiln resume {run_dir} training.epochs=N)",
        )
    return ResumePlan(run_dir, new, checkpoint, None)


def _summary(paths: RunPaths) -> dict[str, Any]:
    if not paths.summary.is_file():
        return {}
    try:
        data: dict[str, Any] = json.loads(paths.summary.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return data
