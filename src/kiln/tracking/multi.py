"""The fan-out: events.jsonl is written synchronously first; every other tracker is fed from a
bounded buffer by one background thread, so a slow or failing tracker never stalls training.
That thread also flushes the step metrics events.jsonl defers, every round.

The buffer is a plain ``deque`` that the thread empties every ``PAUSE`` seconds: appending to it
takes no lock and wakes no thread, which a ``queue.Queue`` would (its lock, its condition
variable). ``flush`` and ``close`` wake the thread at once.

A tracker that raises is reported once and disabled for the rest of the run; the run goes on.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kiln.config.catalogs import TRACKERS
from kiln.config.schema import KilnConfig
from kiln.tracking.base import (
    MetricRecord,
    Scope,
    Tracker,
    TrackerFactory,
    TrackerSetup,
    log_metric_records,
)
from kiln.tracking.jsonl import JsonlTracker

log = logging.getLogger("kiln.tracking")

_STOP = object()
PAUSE = 0.2  # seconds between the fan-out thread's rounds: records gather, the thread wakes rarely


class MultiTracker:
    """One object the trainer talks to; ``trackers`` are built lazily on the background thread.

    ``factories`` maps a tracker name to a zero-argument constructor, so a slow import (TensorBoard)
    or a slow connection (a tracking server) is paid off the training thread.
    """

    name = "multi"

    def __init__(
        self,
        jsonl: JsonlTracker,
        factories: Mapping[str, Callable[[], Tracker]],
        queue_size: int = 10_000,
        on_failure: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.jsonl = jsonl
        self.failures: dict[str, str] = {}
        self.dropped = 0
        self.unsent = 0
        self._factories = dict(factories)
        self._trackers: list[Tracker] = []
        self._on_failure = on_failure or _warn
        self._pending: collections.deque[Any] = collections.deque()  # append/popleft: GIL-atomic
        self._limit = queue_size
        self._wake = threading.Event()  # flush, close and a full replay do not wait for the pause
        self._thread = threading.Thread(target=self._work, name="kiln-tracking", daemon=True)
        if self._factories:  # events.jsonl alone needs no thread
            self._thread.start()

    @property
    def names(self) -> list[str]:
        return ["jsonl", *self._factories]

    def _enqueue(self, method: str, *args: Any) -> None:
        if not self._factories:
            return
        if len(self._pending) >= self._limit:
            self.dropped += 1  # the jsonl record exists; the backlog can be replayed from it
            return
        self._pending.append((method, args))

    def _control(self, *items: Any) -> None:
        """Queue ``items`` past the bound (they must not be dropped) and wake the thread now."""
        self._pending.extend(items)
        self._wake.set()

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.jsonl.log_params(params)
        self._enqueue("log_params", dict(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        self.jsonl.log_metrics(metrics, step, scope)
        self._enqueue("log_metrics", dict(metrics), step, scope)

    def log_event(self, event: str, data: Mapping[str, Any]) -> None:
        self.jsonl.log_event(event, data)
        self._enqueue("log_event", event, dict(data))

    def log_artifact(self, path: Path) -> None:
        self.jsonl.log_artifact(path)
        self._enqueue("log_artifact", path)

    def log_model(self, model: Any, package_dir: Path, example: Any) -> None:
        """Hand a CPU copy of the final model to trackers that store models (``log_model``)."""
        self.jsonl.log_event("model", {"package": str(package_dir)})
        self._enqueue("log_model", model, package_dir, example)

    def replay(self, records: list[dict[str, Any]]) -> None:
        """Feed records read from events.jsonl to every tracker but jsonl (which already has them).

        Used on resume to rebuild the CSV and TensorBoard logs from the truncated events.jsonl.
        Waits while the buffer is full: nothing of the history may be dropped here.
        """
        if not self._factories:
            return
        for record in records:
            kind = record.get("event")
            if kind == "params":
                item: tuple[str, tuple[Any, ...]] = ("log_params", (record["params"],))
            elif kind == "metrics":
                item = ("log_metrics", (record["metrics"], record["step"], record["scope"]))
            elif kind == "summary":
                item = ("log_event", ("summary", record))
            else:
                continue
            while len(self._pending) >= self._limit and self._thread.is_alive():
                self._wake.set()
                time.sleep(0.01)
            self._pending.append(item)

    def flush(self, timeout: float = 30.0) -> None:
        """Put every record in events.jsonl, and wait until the background thread has handed every
        buffered record to its trackers."""
        self.jsonl.flush()
        if not self._factories:
            return
        done = threading.Event()
        self._control(("_flush", (done,)))
        done.wait(timeout)

    def close(self, status: str, timeout: float = 60.0) -> None:
        """Drain the buffer (up to ``timeout`` seconds), close every tracker, then events.jsonl."""
        if self._thread.is_alive():
            self._control(("close", (status,)), _STOP)
            self._thread.join(timeout)
            if self._thread.is_alive():
                # records only: not the close call and the stop mark queued just above
                self.unsent = sum(1 for item in self._pending if item is not _STOP and item[0] != "close")
                log.warning(
                    "tracking: gave up waiting for slow trackers after %.0f s; %d records not sent "
                    "(they are in logs/events.jsonl: `kiln sync` sends them later)", timeout, self.unsent,
                )
        if self.dropped:
            log.warning(
                "tracking: %d records were dropped for slow trackers (buffer full); "
                "logs/events.jsonl has them all",
                self.dropped,
            )
        self.jsonl.close(status)

    def _work(self) -> None:
        for name, factory in self._factories.items():
            try:
                self._trackers.append(factory())
            except Exception as exc:
                self._fail(name, exc)
        while True:
            self._wake.wait(PAUSE)
            self._wake.clear()
            with contextlib.suppress(OSError, ValueError):  # closed under it at the very end
                self.jsonl.flush()
            for item in _coalesce(self._take_batch()):
                if item is _STOP:
                    return
                self._dispatch(*item)

    def _take_batch(self) -> list[Any]:
        """Everything buffered so far, oldest first."""
        batch: list[Any] = []
        while self._pending and not (batch and batch[-1] is _STOP):  # one consumer: no race
            batch.append(self._pending.popleft())
        return batch

    def _dispatch(self, method: str, args: tuple[Any, ...]) -> None:
        if method == "_flush":
            args[0].set()
            return
        for tracker in list(self._trackers):
            handler = getattr(tracker, method, None)
            if method == "_metric_records":
                handler = functools.partial(log_metric_records, tracker)
            if handler is None:  # optional methods (log_model) need not exist
                continue
            try:
                handler(*args)
            except Exception as exc:
                self._trackers.remove(tracker)
                self._fail(tracker.name, exc)

    def _fail(self, name: str, exc: BaseException) -> None:
        self.failures[name] = f"{type(exc).__name__}: {exc}"
        self.jsonl_safe_event("tracker_failed", {"tracker": name, "error": self.failures[name]})
        self._on_failure(name, exc)

    def jsonl_safe_event(self, event: str, data: Mapping[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):  # events.jsonl already closed: nothing to add
            self.jsonl.log_event(event, data)


def _coalesce(batch: list[Any]) -> list[Any]:
    """Merge each run of consecutive ``log_metrics`` items into one ``_metric_records`` item, so a
    tracker that takes records in bulk stores a nap's worth of steps in one write."""
    out: list[Any] = []
    for item in batch:
        if item is not _STOP and item[0] == "log_metrics":
            record: MetricRecord = item[1]
            if out and out[-1] is not _STOP and out[-1][0] == "_metric_records":
                out[-1][1][0].append(record)
            else:
                out.append(("_metric_records", ([record],)))
        else:
            out.append(item)
    return out


def _warn(name: str, exc: BaseException) -> None:
    one_line = " ".join(str(exc).split())  # a server's multi-line error is still one report
    log.warning("tracking: tracker %r failed and is disabled for this run: %s", name, one_line)


def build_trackers(
    cfg: KilnConfig, logs_dir: Path, run_name: str, tags: Mapping[str, str]
) -> dict[str, Callable[[], Tracker]]:
    """Zero-argument constructors for the trackers in ``tracking.backends``, in that order, from
    the TRACKERS catalog (jsonl is separate: the run writes it itself, first).

    Each entry's ``prepare`` runs here, on the training thread, so a setting that cannot work
    fails the run before it trains; the constructors run on the fan-out thread, so a slow import
    or an unreachable server costs training nothing.
    """
    setup = TrackerSetup(cfg, logs_dir, run_name, dict(tags))
    factories: dict[str, Callable[[], Tracker]] = {}
    for name in cfg.tracking.backends:
        if name != "jsonl" and name not in factories:
            factory: TrackerFactory = TRACKERS.get(name)
            factories[name] = factory(setup)
    return factories
