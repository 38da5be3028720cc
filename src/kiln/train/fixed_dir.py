"""One fixed run directory for every restart: what ``kiln train --run-dir DIR`` (``run.dir``) does.

A job script that runs one command again and again until it exits 0 (SLURM with ``--requeue``, a
Kubernetes Job) needs that command to do the right thing wherever the last attempt stopped:

- DIR does not exist, or is empty: a new run starts there.
- DIR holds a run with the same config (changes declared safe on resume allowed, such as a larger
  ``training.epochs``; see :mod:`kiln.config.changes`): it resumes from its newest checkpoint, or
  starts over from step 0 when it has none yet (:mod:`kiln.train.start_over`).
- DIR holds a run with a different config: a ConfigError listing the differences (exit 2).
- The run finished (completed or stopped early): nothing is trained (the CLI exits 0, saying so).
- DIR holds something else: a PathError naming what is there (exit 2).

``run.dir`` itself is not compared: the directory is the one named, however it is spelled.
Rank 0 decides for a distributed job and tells the others; a torchrun restart decides again from
the same path, so every rank of every attempt continues the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kiln.config.changes import resume_safe
from kiln.config.schema import KilnConfig
from kiln.distributed.env import launch_env
from kiln.distributed.group import broadcast_object
from kiln.errors import DistributedError, KilnError, PathError
from kiln.runs.layout import unexpected_contents
from kiln.runs.rundir import HINT, RunDir
from kiln.train.ranks.group import join_group
from kiln.train.resume import config_differences, refuse_changes


@dataclass(frozen=True)
class RunDirChoice:
    """What to do in ``config.run.dir``: start a new run there (``holds_run`` False), or continue
    the run it holds with ``overrides``, the (safe) changes from its config.yaml to this config."""

    run_dir: Path
    holds_run: bool
    overrides: tuple[str, ...] = ()


def choose(config: KilnConfig, allow_config_change: bool = False) -> RunDirChoice:
    """Decide from the directory alone (reads only). PathError when it is neither free nor a run;
    ConfigError listing the differences when it holds a run with a config changed beyond what a
    resume allows, unless ``allow_config_change``."""
    run_dir = config.run.dir
    if run_dir is None:
        raise ValueError("choose() needs a config with run.dir set")
    if not RunDir.is_run(run_dir):
        if run_dir.exists() and not run_dir.is_dir():
            raise PathError(f"run directory {run_dir} is a file", hint=HINT)
        unexpected = unexpected_contents(run_dir)
        if unexpected:
            raise PathError(
                f"{run_dir} is not a kiln run directory (it has no config.yaml) and is not empty: it "
                f"holds {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}",
                hint="pass a new or empty directory for a new run, or the directory of a kiln run to continue it",
            )
        return RunDirChoice(run_dir, holds_run=False)
    old = RunDir(run_dir).read_config()
    same_place = config.model_copy(update={"run": config.run.model_copy(update={"dir": old.run.dir})})
    changes = config_differences(old, same_place)
    unsafe = [change for change in changes if not resume_safe(change[0])]
    if unsafe and not allow_config_change:
        raise refuse_changes(
            run_dir, unsafe,
            "This directory holds a run of another config: run the command it was started with, "
            "pass --allow-config-change to continue it anyway, or pass another --run-dir for a new run.",
        )
    return RunDirChoice(run_dir, True, tuple(f"{key}={as_yaml(new)}" for key, _, new in changes))


def agreed_choice(config: KilnConfig, allow_config_change: bool = False) -> RunDirChoice:
    """``choose`` decided by rank 0 for every rank of a distributed job (joining its group first)."""
    if launch_env().world_size <= 1:
        return choose(config, allow_config_change)
    w = join_group(config.distributed, config.run.device)
    if not w.distributed:
        return choose(config, allow_config_change)
    decision: dict[str, Any] = {"error": None, "holds_run": False, "overrides": []}
    if w.is_zero:
        try:
            choice = choose(config, allow_config_change)
        except KilnError as exc:
            broadcast_object({**decision, "error": str(exc)})
            raise
        broadcast_object({**decision, "holds_run": choice.holds_run, "overrides": list(choice.overrides)})
        return choice
    decision = broadcast_object(decision)
    if decision["error"] is not None:
        raise DistributedError(f"rank {w.rank} stops: rank 0 refused the run directory: {decision['error']}")
    assert config.run.dir is not None
    return RunDirChoice(config.run.dir, bool(decision["holds_run"]), tuple(decision["overrides"]))


def as_yaml(value: Any) -> str:
    """``value`` (from a JSON dump of a config) written as an override's value, which is parsed
    as YAML: it reads back as the very same value."""
    text: str = yaml.safe_dump(value, default_flow_style=True, width=math.inf)
    return text.strip().removesuffix("\n...")  # a scalar's dump ends the document: "5\n...\n"
