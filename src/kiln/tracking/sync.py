"""``kiln sync``: replay a run's events.jsonl into MLflow, e.g. after the server was down.

Idempotent: metrics MLflow already has (same key and step) are skipped, so syncing twice adds nothing.
A finisher still sending the run (``kiln.tracking.finisher``) is waited for, and past ``wait``
seconds taken over: sync then sends what it had not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import PathError
from kiln.runs.layout import RunPaths
from kiln.tracking.base import MetricRecord
from kiln.tracking.jsonl import read_events
from kiln.tracking.mlflow import MlflowTracker, check_reachable, probe, read_link

SYNC_BATCH = 1000  # metric records sent at once: a long run's history is not held in memory whole


@dataclass(frozen=True)
class SyncReport:
    run_id: str
    tracking_uri: str
    metrics_sent: int
    model_logged: bool


def sync_run(run_dir: str | Path, uri: str | None = None, wait: float = 60.0) -> SyncReport:
    """Send everything in ``run_dir``'s events.jsonl that MLflow lacks; also artifacts and the model.

    ``wait``: seconds to let a finisher still at work end on its own before taking over from it.
    """
    from kiln.config import load_config
    from kiln.runs.environment import run_tags
    from kiln.settings import default_artifact_root, tracking_uri

    paths = RunPaths(Path(run_dir))
    if not paths.events.is_file() or not paths.config.is_file():
        raise PathError(f"{paths.root} is not a kiln run directory (no config.yaml or logs/events.jsonl)")
    cfg = load_config(paths.config)
    link = read_link(paths.logs)
    target = uri or (link["tracking_uri"] if link else tracking_uri(cfg.tracking.uri, cfg.run.output_dir))
    check_reachable(target)
    probe(target)  # a server that is down: one line now, not a minute of retries
    environment = json.loads(paths.environment.read_text(encoding="utf-8"))
    environment.setdefault("data_fingerprint", "unknown")
    tracker = MlflowTracker(
        target, cfg.run.experiment or cfg.run.name, paths.root.name, paths.logs,
        run_tags(environment, paths), default_artifact_root(target), lock_wait=wait,
    )
    try:
        known_before = len(tracker._known)
        status = _replay(tracker, paths)
        model_logged = _log_model_if_missing(tracker, paths)
    except BaseException as exc:
        tracker.give_up(f"{type(exc).__name__}: {exc}")  # says so in the run dir, lets go of the lock
        raise
    tracker.close(status)
    return SyncReport(tracker.run_id, target, len(tracker._known) - known_before, model_logged)


def _replay(tracker: MlflowTracker, paths: RunPaths) -> str:
    """Send events.jsonl's params, metrics, summary and the run's files; the run's final status."""
    status = "interrupted"
    pending: list[MetricRecord] = []  # consecutive metric records go to MLflow in one batch
    for record in read_events(paths.events):
        kind = record.get("event")
        if kind == "metrics":
            pending.append((record["metrics"], record["step"], record["scope"]))
            if len(pending) < SYNC_BATCH:
                continue
        tracker.log_metric_records(pending)
        pending = []
        if kind == "params":
            tracker.log_params(record["params"])
        elif kind == "summary":
            status = record["status"]
            tracker.log_event("summary", record)
    tracker.log_metric_records(pending)
    for path in (paths.config, paths.summary, paths.environment, paths.csv_log):
        tracker.log_artifact(path)
    return status


def _log_model_if_missing(tracker: MlflowTracker, paths: RunPaths) -> bool:
    """Log the model unless MLflow has it complete (its tag is set after both artifacts: a
    finisher stopped half-way left a partial ``model`` that this replaces)."""
    if not (paths.models / "model.json").is_file() or tracker.has_model():
        return False
    import numpy as np

    from kiln.models.package import load_package

    package = load_package(paths.root)
    example = np.zeros((2, *package.spec.input_shape), dtype=np.dtype(package.spec.input_dtype))
    tracker.log_model(package.model.eval(), paths.models, example)
    return True
