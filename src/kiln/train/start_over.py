"""Training in a given directory from step 0: the fixed ``run.dir`` of a new run, and a run that
stopped before its first checkpoint starting over where it was.

A run killed during start-up or its first epoch has a directory, a config.yaml and some logs, but
no checkpoint to continue from. Resuming it trains it again from step 0 in the same directory,
with its logs cut back the way a resume cuts them back to its checkpoint: for step 0 that is the
start, so events.jsonl is emptied and then opens with a "restarted" record (the restart count and
the step the dropped start had reached), and the CSV and TensorBoard logs are rebuilt from it with
no row twice. The directory, config.yaml and the MLflow run (``logs/mlflow.json``) stay, so the
run keeps one identity; MLflow keeps the first value logged at a step (see
``kiln.tracking.mlflow``), the same values again for a deterministic run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kiln.config.schema import KilnConfig
from kiln.errors import PathError
from kiln.runs.layout import RunPaths, claim_run_dir
from kiln.runs.rundir import RunDir
from kiln.tracking.jsonl import read_events
from kiln.train.setup import new_run_dir, write_config


def new_or_fixed_run_dir(cfg: KilnConfig) -> RunPaths:
    """A new timestamped run directory, or the fixed ``run.dir``, which must not hold a run."""
    if cfg.run.dir is None:
        return new_run_dir(cfg)
    if RunDir.is_run(cfg.run.dir):
        raise PathError(
            f"run.dir {cfg.run.dir} already holds a run",
            hint=f"continue it with `kiln train --run-dir {cfg.run.dir}` (kiln.train.resume_run.run_in_dir), which "
                 "resumes it, starts it over or says that it finished; or set another run.dir",
        )
    return _claim(cfg.run.dir, cfg)


def start_over_in(run_dir: Path, cfg: KilnConfig, restarted: dict[str, Any]) -> RunPaths:
    """Rank 0: ``run_dir`` ready to train from step 0, its config.yaml written: claimed when it
    holds no run yet, else cut back to its start (:func:`start_over`), what was dropped then
    going into ``restarted`` for the "restarted" record."""
    if not RunDir.is_run(run_dir):
        return _claim(run_dir, cfg)
    paths = RunPaths(run_dir)
    write_config(paths, cfg)
    restarted.update(start_over(paths))
    return paths


def start_over(paths: RunPaths) -> dict[str, Any]:
    """Cut a run stopped before its first checkpoint back to its start, as ``cut_logs`` cuts a
    resumed run back to its checkpoint (here step 0, when the log was empty): events.jsonl is
    emptied; the logs rebuilt from it (CSV, TensorBoard), summary.json, environment.json (this
    machine is captured afresh) and the data records are removed, to be written again. Kept:
    config.yaml, the MLflow link and the checkpoints/ folder (without a committed checkpoint).
    Returns what the "restarted" record says about the start that was dropped."""
    dropped = read_events(paths.events) if paths.events.exists() else []
    steps = [r["step"] for r in dropped if r.get("event") == "metrics" and isinstance(r.get("step"), int)]
    earlier = next((r for r in dropped if r.get("event") == "restarted"), None)  # that start's first record
    summary = RunDir(paths.root).read_summary_if_any()  # written when that start crashed or was stopped
    info: dict[str, Any] = {
        "reason": "no checkpoint",
        "restarts": 1 + (int(earlier.get("restarts", 0)) if earlier is not None else 0),
        "reached_step": max(steps, default=0),  # the last step the dropped start logged
        "dropped_records": len(dropped),
        "previous_status": summary.status if summary is not None else None,
    }
    if paths.events.exists():
        with paths.events.open("r+b") as f:
            f.truncate(0)
    for record in (paths.csv_log, paths.summary, paths.environment, paths.data_report, paths.data_splits, paths.preview,
                   paths.logs / "samples.jsonl"):
        record.unlink(missing_ok=True)
    shutil.rmtree(paths.tensorboard, ignore_errors=True)
    return info


def _claim(run_dir: Path, cfg: KilnConfig) -> RunPaths:
    """Take the free directory ``run_dir`` for a new run and write its config.yaml."""
    try:
        paths = claim_run_dir(run_dir)
    except FileExistsError as exc:
        raise PathError(f"{run_dir} is no place to start a run: it is not a kiln run directory "
                        f"(it has no config.yaml) and not empty ({exc})",
                        hint="pass a new or empty directory, or a kiln run directory to continue") from None
    write_config(paths, cfg)
    return paths
