"""Who may write a run's MLflow run right now: one process at a time, by a lock in the run dir.

The MLflow worker of a training run takes ``logs/mlflow.lock`` when it starts and keeps it until
it has finished everything the run handed it (the model, the final status). When training ends
the worker goes on alone, detached from the run's process: the *finisher*. The prompt does not
wait for it. Everything else that writes or reads that MLflow run for its complete state (a
resumed run's worker, ``kiln sync``, ``kiln registry register``) first waits for the lock, and
past its patience takes over: the finisher is stopped (SIGTERM, then SIGKILL) and the newcomer
replays events.jsonl, which holds everything, idempotently.

The lock is ``flock``: the kernel releases it when its holder dies, however it dies, so a killed
finisher never leaves a stale lock behind. The file's text is the holder's pid, for take-overs
and for ``kiln runs``; ``logs/mlflow_finish.json`` records how the last finisher ended.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from pathlib import Path
from typing import IO, Any

from kiln import settings

LOCK_FILE = "mlflow.lock"
OUTCOME_FILE = "mlflow_finish.json"
POLL = 0.05  # seconds between looks at a held lock
# The run's process takes the lock before it starts the worker and hands it over as an inherited
# file descriptor named by this variable (in the worker's environment only): the lock is held
# from the moment the worker exists, not from when it has imported MLflow seconds later, so a
# command run right after the prompt comes back sees it.
ENV_FD = settings.KILN_FINISHER_LOCK_FD


class FinisherLock:
    """The exclusive right to write a run's MLflow run, held until ``release()`` or process exit."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle: IO[str] | None = handle

    def fileno(self) -> int:
        assert self._handle is not None
        return self._handle.fileno()

    def write_pid(self, pid: int) -> None:
        """Name the process that holds the lock (a take-over stops that one)."""
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(str(pid))
            self._handle.flush()

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()  # closing the file drops the flock
            self._handle = None


def try_lock(logs_dir: Path) -> FinisherLock | None:
    """The lock if nobody holds it, at once; else None."""
    handle = (logs_dir / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    lock = FinisherLock(handle)
    lock.write_pid(os.getpid())
    return lock


def _inherited(logs_dir: Path) -> FinisherLock | None:
    """The lock handed down by the run's process (``ENV_FD``), when it is this run's."""
    fd = os.environ.get(ENV_FD, "")
    if not fd.isdigit():
        return None
    try:
        held, here = os.fstat(int(fd)), os.stat(logs_dir / LOCK_FILE)
    except OSError:
        return None
    if (held.st_dev, held.st_ino) != (here.st_dev, here.st_ino):
        return None
    lock = FinisherLock(os.fdopen(int(fd), "a+", encoding="utf-8"))
    lock.write_pid(os.getpid())
    return lock


def holder(logs_dir: Path) -> int | None:
    """The pid of the process finishing this run's MLflow run, or None when nobody holds the lock."""
    path = logs_dir / LOCK_FILE
    if not path.is_file():
        return None
    with path.open("r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = path.read_text(encoding="utf-8").strip()
            return int(text) if text.isdigit() else -1
    return None


def acquire(logs_dir: Path, wait: float, take_over: bool = True) -> FinisherLock:
    """Take the lock, waiting up to ``wait`` seconds for a finisher to end on its own; then stop it
    when ``take_over`` (else raise TimeoutError). What it had not sent is still in events.jsonl."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    inherited = _inherited(logs_dir)
    if inherited is not None:
        return inherited
    deadline = time.monotonic() + wait
    while True:
        lock = try_lock(logs_dir)
        if lock is not None:
            return lock
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL)
    pid = holder(logs_dir)
    if not take_over:
        raise TimeoutError(f"the MLflow finisher of {logs_dir.parent} (pid {pid}) is still at work")
    for sig, patience in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if pid is not None and pid > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            lock = try_lock(logs_dir)
            if lock is not None:
                return lock
            time.sleep(POLL)
    raise TimeoutError(f"could not take over the MLflow finisher of {logs_dir.parent} (pid {pid})")


def wait_for_finisher(run_dir: str | Path, timeout: float = 120.0) -> bool:
    """Wait until nothing is still sending ``run_dir`` to MLflow; False if ``timeout`` passed first.

    >>> wait_for_finisher("runs/digits_mlp_20261123_121328")  # doctest: +SKIP
    True
    """
    logs_dir = Path(run_dir) / "logs"
    if not logs_dir.is_dir():
        return True
    try:
        acquire(logs_dir, timeout, take_over=False).release()
    except TimeoutError:
        return False
    return True


def wait_for_link(logs_dir: Path, timeout: float = 120.0) -> dict[str, Any] | None:
    """The run's MLflow link (``logs/mlflow.json``) once its MLflow process has created the run:
    None when no MLflow process holds the run and none was created (MLflow off, or failed), or
    when ``timeout`` passed first. Right after a run, its detached worker may still be opening the
    store, so the link is not there yet."""
    from kiln.tracking.mlflow import read_link

    deadline = time.monotonic() + timeout
    while True:
        link = read_link(logs_dir)
        if link is not None or holder(logs_dir) is None or time.monotonic() >= deadline:
            return link if link is not None else read_link(logs_dir)
        time.sleep(POLL)


def record_outcome(logs_dir: Path, data: dict[str, Any]) -> None:
    """How the last finisher ended (``{"ok": true}`` or the error): ``kiln runs`` shows it."""
    tmp = logs_dir / (OUTCOME_FILE + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps({"time": round(time.time(), 3), **data}), encoding="utf-8")
        os.replace(tmp, logs_dir / OUTCOME_FILE)


def state(run_dir: Path) -> str:
    """One word or two on where a run's MLflow run stands, for listings: "" (nothing to say),
    "finishing" (a finisher holds the lock), or "failed: ..." (send it with ``kiln sync``)."""
    logs_dir = run_dir / "logs"
    if holder(logs_dir) is not None:
        return "finishing"
    try:
        outcome = json.loads((logs_dir / OUTCOME_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if isinstance(outcome, dict) and outcome.get("error"):
        return "failed (kiln sync)"
    return ""
