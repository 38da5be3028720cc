"""Weights & Biases: ``logs/wandb/`` in offline mode (``wandb sync`` uploads it later), or a W&B
server online. Every metric is plotted against kiln's ``global_step``, so epoch, per-step
(``step/``) and system (``system/``) metrics share one axis; test metrics go to the run summary.

The W&B run id is the run directory's name, so ``kiln resume`` keeps appending to the same run.
W&B has no way to skip a point it already holds, so ``logs/wandb/kiln_steps.json`` records the
last step logged per scope; a resumed process skips what earlier processes logged (the replayed
history, and the steps re-trained after the checkpoint, which an exact resume makes identical).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from kiln.errors import MissingExtraError
from kiln.runs.layout import read_json_if_present, write_json
from kiln.tracking.base import Scope, Tracker, TrackerSetup

FINISHED = ("completed", "stopped_early")


def wandb_run_id(run_name: str) -> str:
    """A W&B run id from a run directory's name (W&B allows letters, digits, ``-`` and ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", run_name)[:128]


class WandbTracker:
    name = "wandb"

    def __init__(
        self,
        logs_dir: Path,
        project: str,
        run_name: str,
        tags: Mapping[str, str],
        mode: Literal["offline", "online"] = "offline",
        entity: str | None = None,
    ) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise MissingExtraError("wandb", "wandb") from exc
        logs_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            mode=mode, silent=True, console="off", x_disable_stats=True,  # kiln samples system metrics itself
            reinit="create_new",  # several runs in one process (sweeps, tests) each get their own
        )
        self._run = wandb.init(
            project=project, entity=entity, name=run_name, id=wandb_run_id(run_name),
            dir=str(logs_dir), resume="allow", settings=settings,
            tags=[f"{k}={v}"[:64] for k, v in sorted(tags.items())],
        )
        self._steps_file = logs_dir / "wandb" / "kiln_steps.json"
        self._previous = {k: int(v) for k, v in (read_json_if_present(self._steps_file) or {}).items()}  # earlier processes
        self._latest = dict(self._previous)
        self._run.define_metric("global_step")
        self._run.define_metric("*", step_metric="global_step")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._run.config.update(dict(params), allow_val_change=True)  # type: ignore[no-untyped-call]

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        if step <= self._previous.get(scope, -1):
            return  # an earlier process of this run logged it already
        self._latest[scope] = max(step, self._latest.get(scope, -1))
        write_json(self._steps_file, self._latest)
        if scope == "test":
            for key, value in metrics.items():
                self._run.summary[key] = value
            return
        prefix = "" if scope == "epoch" else f"{scope}/"
        self._run.log({"global_step": step, **{prefix + k: v for k, v in metrics.items()}})

    def log_event(self, event: str, data: Mapping[str, Any]) -> None: ...

    def log_artifact(self, path: Path) -> None:
        if path.is_file():
            self._run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, status: str) -> None:
        self._run.finish(exit_code=0 if status in FINISHED else 1)


def prepare(setup: TrackerSetup) -> Callable[[], Tracker]:
    """The TRACKERS entry, set by ``tracking.wandb``; a missing wandb package is found (and
    reported once, naming the extra) on the fan-out thread, where wandb is imported."""
    cfg = setup.config
    w = cfg.tracking.wandb
    project = w.project or cfg.run.experiment or cfg.run.name
    return functools.partial(WandbTracker, setup.logs_dir, project, setup.run_name, dict(setup.tags),
                             w.mode, w.entity)
