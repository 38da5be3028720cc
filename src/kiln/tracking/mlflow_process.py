"""The ``mlflow`` TRACKERS entry: MLflow runs in a worker process of its own, which finishes on its
own after the run (the finisher, ``kiln.tracking.finisher``), so the run's end never waits for
MLflow and MLflow's imports and HTTP calls never take the training process's GIL.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiln.tracking.base import Tracker, TrackerSetup


def prepare(setup: TrackerSetup) -> Callable[[], Tracker]:
    """Check ``tracking.uri`` now (a malformed one fails the run before it trains) and return the
    constructor of the worker, which the fan-out thread calls."""
    from kiln.settings import default_artifact_root, tracking_uri
    from kiln.tracking.mlflow import check_reachable

    cfg, logs_dir = setup.config, setup.logs_dir
    uri = tracking_uri(cfg.tracking.uri, cfg.run.output_dir)
    check_reachable(uri)
    args = (uri, cfg.run.experiment or cfg.run.name, setup.run_name, logs_dir, dict(setup.tags),
            default_artifact_root(uri), cfg.tracking.log_model, cfg.tracking.close_timeout)
    return functools.partial(
        start_worker, uri, args, cfg.tracking.close_timeout, logs_dir, cfg.tracking.mlflow_start_delay
    )


def start_worker(uri: str, args: tuple[Any, ...], timeout: float, logs_dir: Path, start_delay: float) -> Tracker:
    """The MLflow tracker in its worker process, which finishes on its own after the run (the
    finisher: the run's end does not wait for MLflow). A server that does not answer is found out
    here, within a second or two, instead of by the worker's first call."""
    from kiln.tracking import finisher
    from kiln.tracking.mlflow import WORKER_ENV, probe
    from kiln.tracking.remote import RemoteTracker

    probe(uri)
    env = {k: v for k, v in WORKER_ENV.items() if k not in os.environ}
    # Held from before the worker exists, and handed to it (it waits for a previous finisher
    # itself when a resumed run's lock is still taken).
    lock = finisher.try_lock(logs_dir)
    fds = () if lock is None else (lock.fileno(),)
    if lock is not None:
        env[finisher.ENV_FD] = str(lock.fileno())
    try:
        tracker = RemoteTracker("mlflow", "kiln.tracking.mlflow:MlflowTracker", args, timeout, env=env,
                                log_path=logs_dir / "mlflow_worker.log", detach=True, pass_fds=fds,
                                start_after=start_delay)
        if lock is not None:
            lock.write_pid(tracker.process.pid)
    finally:
        if lock is not None:
            lock.release()  # this process's copy only: the worker's copy keeps the lock
    return tracker
