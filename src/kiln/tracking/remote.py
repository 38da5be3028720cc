"""RemoteTracker: a tracker that runs in a child process.

Heavy trackers (MLflow: seconds of imports, a database migration on first use, HTTP retries) would
otherwise run Python on a thread of the training process and, through the GIL, slow every step.
In their own process they cost the training loop nothing but a pickled record on a pipe.

With ``detach=True``, ``close`` does not wait for the worker: it finishes what it was handed on its
own (the MLflow finisher, see ``kiln.tracking.finisher``), so the end of a run never waits for a
server. The worker runs in its own session, so Ctrl-C in the terminal reaches only the run.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from kiln.errors import TrackingError
from kiln.tracking.base import MetricRecord, Scope
from kiln.tracking.spare import SpareWorker

# Detached workers still running. Holding them keeps Popen's finalizer from warning that a child
# is still running (it is meant to); each new one reaps those that have ended.
_DETACHED: list[subprocess.Popen[bytes]] = []


def _keep(process: subprocess.Popen[bytes]) -> None:
    atexit.unregister(_leave_running)  # registered once, however often the list empties (sweeps)
    atexit.register(_leave_running)
    _DETACHED[:] = [p for p in _DETACHED if p.poll() is None]
    _DETACHED.append(process)


def _adopt(spare: SpareWorker | None, env_fds: Mapping[str, int], log: IO[bytes] | None) -> subprocess.Popen[bytes] | None:
    """The spare's process, handed its descriptors; None when there is no live spare to adopt."""
    if spare is None:
        return None
    if spare.alive():
        try:
            spare.hand_over(env_fds, log.fileno() if log is not None else None)
            return spare.process
        except OSError:  # it died in between: start a worker of our own
            pass
    spare.discard()
    return None


def _leave_running() -> None:
    """At exit, tell each finisher's Popen that its child is left running on purpose, so it does
    not warn "subprocess ... is still running" (the child finishes on its own)."""
    for process in _DETACHED:
        if process.poll() is None:
            process.returncode = 0


def worker_command(close_timeout: float, detach: bool, start_after: float) -> list[str]:
    """The command line of a tracker's worker process (``kiln.tracking.worker``)."""
    command = [sys.executable, "-m", "kiln.tracking.worker"]
    if detach:
        command += ["--deadline", str(close_timeout)]
    if start_after > 0:
        command += ["--start-after", str(start_after)]  # see kiln.tracking.worker
    return command


def worker_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The worker's environment: ours, plus ``env``."""
    return {"PYTHONIOENCODING": "utf-8", **(env or {})}  # MLflow prints emoji


class RemoteTracker:
    """``env_fds`` names file descriptors the worker inherits, each by an environment variable
    (the finisher lock); ``spare`` is a worker started earlier with the same command and
    environment (``kiln.tracking.spare``), adopted instead of starting one."""

    def __init__(
        self,
        name: str,
        factory: str,
        args: tuple[Any, ...],
        close_timeout: float,
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        detach: bool = False,
        env_fds: Mapping[str, int] | None = None,
        start_after: float = 0.0,
        spare: SpareWorker | None = None,
    ) -> None:
        self.name = name
        self.close_timeout = close_timeout
        self.detach = detach
        self._error: str | None = None
        self._closed = threading.Event()
        self.collecting = threading.Event()  # set once the worker waits out ``start_after``
        fds = dict(env_fds or {})
        # The worker's own output (library warnings) goes to a log file when given: a worker that
        # outlives the run must not write over the user's next prompt.
        log = log_path.open("ab") if log_path is not None else None
        try:
            self.process = _adopt(spare, fds, log) or subprocess.Popen(
                worker_command(close_timeout, detach, start_after),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=False,
                env={**os.environ, **worker_env(env), **{k: str(fd) for k, fd in fds.items()}},
                start_new_session=True, pass_fds=tuple(fds.values()),
            )
        finally:
            if log is not None:
                log.close()
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin: IO[bytes] = self.process.stdin
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout,), name=f"kiln-{name}-reader", daemon=True
        )
        self._reader.start()
        self._send("__init__", factory, args)

    def _read(self, stdout: IO[bytes]) -> None:
        with stdout:
            for line in stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue  # not a protocol line
                if not isinstance(message, dict):
                    continue
                if "error" in message:
                    self._error = str(message["error"])
                if "closed" in message:
                    self._closed.set()
                if "collecting" in message:
                    self.collecting.set()

    def _send(self, method: str, *args: Any) -> None:
        if self._error is not None:
            self._reap()
            raise TrackingError(self._error)
        if self.process.poll() is not None:
            self._reader.join(timeout=5)  # its last words (the error) may still be in the pipe
            self._reap()
            raise TrackingError(self._error or f"the {self.name} worker process exited ({self.process.returncode})")
        payload = (args[0], args[1]) if method == "__init__" else (method, args)
        try:
            pickle.dump(payload, self._stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self._reader.join(timeout=5)  # the worker exited after the check above: read why
            self._reap()
            raise TrackingError(self._error or f"the {self.name} worker process is gone ({exc})") from None

    def _reap(self) -> None:
        """A worker that failed is exiting: close its pipe and wait for it (killed past
        close_timeout), so that no child process or open pipe outlives the failed tracker."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        self._wait_or_kill()

    def _wait_or_kill(self) -> bool:
        """Wait up to close_timeout for the worker to exit; past it, kill it. True when killed."""
        try:
            self.process.wait(timeout=self.close_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return True
        return False

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._send("log_params", dict(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        self._send("log_metrics", dict(metrics), step, scope)

    def log_metric_records(self, records: Sequence[MetricRecord]) -> None:
        self._send("log_metric_records", list(records))

    def log_event(self, event: str, data: Mapping[str, Any]) -> None:
        self._send("log_event", event, dict(data))

    def log_artifact(self, path: Path) -> None:
        self._send("log_artifact", path)

    def log_model(self, model: Any, package_dir: Path, example: Any) -> None:
        self._send("log_model", model, package_dir, example)

    def close(self, status: str) -> None:
        """Ask the worker to finish. Detached: return at once (the worker has ``close_timeout``
        seconds to finish on its own). Else wait; past ``close_timeout`` it is killed (events.jsonl
        keeps all)."""
        try:
            self._send("close", status)
        finally:
            with contextlib.suppress(OSError):
                self._stdin.close()
        if self.detach:
            _keep(self.process)
            if self._error is not None:
                raise TrackingError(self._error)
            return
        if self._wait_or_kill():
            raise TrackingError(
                f"{self.name} did not finish within {self.close_timeout:.0f} s and was stopped; "
                "`kiln sync RUN_DIR` sends what it missed"
            ) from None
        self._reader.join(timeout=5)
        if self._error is not None:
            raise TrackingError(self._error)
