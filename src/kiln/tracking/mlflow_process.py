"""The ``mlflow`` TRACKERS entry: MLflow runs in a worker process of its own, which finishes on its
own after the run (the finisher, ``kiln.tracking.finisher``), so the run's end never waits for
MLflow and MLflow's imports and HTTP calls never take the training process's GIL.

``prestart`` starts that worker early, as a spare (``kiln.tracking.spare``): ``kiln train`` calls
it once its config is read, so MLflow's import and the opening of its store overlap the run's own
start-up rather than its training.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.tracking.base import Tracker, TrackerSetup

if TYPE_CHECKING:
    from kiln.config.schema import KilnConfig
    from kiln.tracking.spare import SpareWorker

FACTORY = "kiln.tracking.mlflow:MlflowTracker"
PRELOAD = "kiln.tracking.mlflow:preload"

_spare: SpareWorker | None = None  # started by prestart, adopted by the next matching prepare
_spare_lock = threading.Lock()


def prepare(setup: TrackerSetup) -> Callable[[], Tracker]:
    """Check ``tracking.uri`` now (a malformed one fails the run before it trains) and return the
    constructor of the worker, which the fan-out thread calls."""
    from kiln.settings import default_artifact_root, tracking_uri
    from kiln.tracking.mlflow import check_reachable

    cfg, logs_dir = setup.config, setup.logs_dir
    uri = tracking_uri(cfg.tracking.uri, cfg.run.output_dir)
    check_reachable(uri)
    args = (uri, cfg.run.experiment or cfg.run.name, setup.run_name, logs_dir, dict(setup.tags),
            default_artifact_root(uri), cfg.tracking.close_timeout)
    timeout, delay = cfg.tracking.close_timeout, cfg.tracking.mlflow_start_delay
    return functools.partial(start_worker, uri, args, timeout, logs_dir, delay, _take_spare(_key(uri, timeout, delay)))


def prestart(cfg: KilnConfig) -> None:
    """Start the worker for a run of ``cfg`` now, if the run will track to MLflow, so that it
    imports MLflow while the run imports torch and builds its data. The run's ``prepare`` adopts
    it; nothing happens to a run whose settings do not match (it starts its own)."""
    global _spare
    if "mlflow" not in cfg.tracking.backends:
        return
    from kiln.settings import tracking_uri
    from kiln.tracking import spare
    from kiln.tracking.remote import worker_command, worker_env

    uri = tracking_uri(cfg.tracking.uri, cfg.run.output_dir)
    timeout, delay = cfg.tracking.close_timeout, cfg.tracking.mlflow_start_delay
    key = _key(uri, timeout, delay)
    with _spare_lock:
        if _spare is not None and _spare.key == key and _spare.alive() and not _spare.discarded:
            return  # started already (kiln train, then the run it found in run.dir)
    command = [*worker_command(timeout, True, delay), "--preload", PRELOAD, "--preload-arg", uri]
    started = spare.start(command, key, worker_env(_worker_env()))
    with _spare_lock:
        previous, _spare = _spare, started
    if previous is not None:
        previous.discard()


def _key(uri: str, timeout: float, delay: float) -> Hashable:
    return (uri, timeout, delay, tuple(sorted(_worker_env().items())))


def _take_spare(key: Hashable) -> SpareWorker | None:
    """The spare started for these settings, once; another spare is stopped."""
    global _spare
    with _spare_lock:
        found, _spare = _spare, None
    if found is None or found.key == key:
        return found
    found.discard()
    return None


def _worker_env() -> dict[str, str]:
    from kiln.tracking.mlflow import WORKER_ENV

    return {k: v for k, v in WORKER_ENV.items() if k not in os.environ}


def start_worker(uri: str, args: tuple[Any, ...], timeout: float, logs_dir: Path, start_delay: float,
                 spare: SpareWorker | None = None) -> Tracker:
    """The MLflow tracker in its worker process (``spare`` if one was started), which finishes on
    its own after the run (the finisher: the run's end does not wait for MLflow). A server that
    does not answer is found out here, within a second or two, instead of by the worker's first
    call."""
    from kiln.tracking import finisher
    from kiln.tracking.mlflow import probe
    from kiln.tracking.remote import RemoteTracker

    try:
        probe(uri)
    except BaseException:
        if spare is not None:
            spare.discard()
        raise
    # Held from before the worker is handed the run, and handed to it (it waits for a previous
    # finisher itself when a resumed run's lock is still taken).
    lock = finisher.try_lock(logs_dir)
    try:
        tracker = RemoteTracker("mlflow", FACTORY, args, timeout, env=_worker_env(),
                                log_path=logs_dir / "mlflow_worker.log", detach=True,
                                env_fds={} if lock is None else {finisher.ENV_FD: lock.fileno()},
                                start_after=start_delay, spare=spare)
        if lock is not None:
            lock.write_pid(tracker.process.pid)
    finally:
        if lock is not None:
            lock.release()  # this process's copy only: the worker's copy keeps the lock
    return tracker
