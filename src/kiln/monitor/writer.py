"""The prediction log's writer: a background thread with a bounded queue, one per process.

``/predict`` hands each answered batch to ``PredictionLog.record``, which only puts a reference
on a queue (about a microsecond): summarizing the inputs, serializing and the SQLite commit all
happen on the writer thread, so a slow disk or a lock held by another worker never delays an
answer. When the queue is full (the disk cannot keep up) the batch is dropped and counted
(``kiln_prediction_log_dropped_total``), again so that the log never slows serving.

The writer lingers ``LINGER_SECONDS`` after the first prediction of a quiet spell before it
commits (never when more are already queued), so that a busy server commits a few dozen predictions at a time: one commit per request
took the writer thread (and Python's GIL, which the request's own thread needs) for about 0.3 ms
after every answer, and added that to the median request at concurrency 1.

A prediction is *committed* once the writer's transaction holding it commits (within about
``LINGER_SECONDS``); from then on it survives the death of the process. ``stop`` (the app's shutdown, after uvicorn has let requests
in flight finish on SIGTERM) writes everything still queued before returning. The writer also
prunes the log to its retention every ``prune_seconds``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kiln.monitor.store import Retention, connect, insert_predictions, prune
from kiln.monitor.summary import InputSummary

log = logging.getLogger("kiln.monitor")

QUEUE_SIZE = 10_000  # batches; at a few hundred bytes of row each, a few MB at most
MAX_ROWS_PER_COMMIT = 2_000
PRUNE_SECONDS = 60.0
LINGER_SECONDS = 0.05  # gather a commit's worth of predictions (see the module's docstring)
MAX_STACK_BYTES = 16 << 20  # inputs summarized in one pass: the summary makes float64 copies
_IDLE = object()  # the queue stayed empty until pruning was due


@dataclass(frozen=True)
class LoggedModel:
    """The served model as the log names it."""

    name: str
    version: str
    class_names: Sequence[str]  # empty for a regression model
    summary: InputSummary


class PredictionLog:
    """Appends every prediction to the log at ``path``, off the request path.

    >>> plog = PredictionLog(path, model, Retention())  # doctest: +SKIP
    >>> plog.start(); plog.record("3f2a...", batch, probabilities); plog.stop()  # doctest: +SKIP
    """

    def __init__(self, path: Path, model: LoggedModel, retention: Retention, *,
                 log_inputs: bool = False, queue_size: int = QUEUE_SIZE,
                 prune_seconds: float = PRUNE_SECONDS,
                 on_drop: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.model = model
        self.retention = retention
        self.log_inputs = log_inputs
        self.prune_seconds = prune_seconds
        self.on_drop = on_drop
        self.queue: queue.Queue[Any] = queue.Queue(queue_size)
        self.thread: threading.Thread | None = None
        self.dropped = 0
        self.failed = 0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="kiln-prediction-log", daemon=True)
        self.thread.start()

    def record(self, request_id: str, batch: Any, outputs: Any) -> None:
        """Queue one answered request: its id, its (normalized) batch and the model's outputs."""
        try:
            self.queue.put_nowait((time.time(), request_id, batch, outputs))
        except queue.Full:
            self._drop(len(batch), "the queue is full (the log's disk cannot keep up)")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is committed; False if that took over ``timeout``."""
        done = threading.Event()
        try:
            self.queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then end the thread (the app's shutdown calls this)."""
        if self.thread is None:
            return
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            log.error("prediction log: the writer did not drain its queue in %.0fs; %d queued "
                      "predictions are lost", timeout, self.queue.qsize())
            return
        self.thread.join(timeout)
        self.thread = None

    def _drop(self, count: int, why: str) -> None:
        if self.dropped == 0 or why.startswith("the write failed"):
            log.warning("prediction log: %d predictions not logged: %s", count, why)
        self.dropped += count
        if self.on_drop is not None:
            self.on_drop(count)

    def _run(self) -> None:
        connection = connect(self.path)
        next_prune = time.monotonic()  # once at start: a server down for weeks comes back pruned
        try:
            while True:
                try:
                    first = self.queue.get(timeout=max(0.0, next_prune - time.monotonic()))
                except queue.Empty:
                    first = _IDLE
                if isinstance(first, tuple) and self.queue.empty():  # a quiet spell: let its neighbours arrive
                    time.sleep(LINGER_SECONDS)  # (a backlog is drained at full speed)
                stop, rows, waiting = self._take(first)
                if rows:
                    try:
                        insert_predictions(connection, rows)
                    except Exception as exc:
                        self._drop(len(rows), f"the write failed ({exc})")
                for event in waiting:
                    event.set()
                if stop:
                    return
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.prune_seconds
                    try:
                        prune(connection, self.retention)
                    except Exception as exc:
                        log.warning("prediction log: pruning %s failed (%s); retried in %.0fs",
                                    self.path, exc, self.prune_seconds)
        finally:
            connection.close()

    def _take(self, first: Any) -> tuple[bool, list[tuple[Any, ...]], list[threading.Event]]:
        """``first`` and whatever else is queued now, up to a commit's worth of rows."""
        stop, batches, waiting = False, [], []
        item, count = first, 0
        while True:
            if item is None:
                stop = True
            elif isinstance(item, threading.Event):
                waiting.append(item)
            elif item is not _IDLE:
                batches.append(item)
                count += len(item[2])
            if stop or count >= MAX_ROWS_PER_COMMIT:
                break
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
        return stop, self._rows_of(batches), waiting

    def _rows_of(self, batches: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows of several queued batches, summarized a group at a time (one NumPy pass per
        ``MAX_STACK_BYTES`` of inputs, not one per request: the writer shares the GIL with the
        requests); one batch at a time where a group does not stack."""
        rows: list[tuple[Any, ...]] = []
        for group in _groups(batches):
            if len(group) > 1:
                try:
                    rows += self._stacked(group)
                    continue
                except Exception:  # shapes differ, or one batch is odd: the per-batch path finds it
                    pass
            for when, request_id, batch, out in group:
                try:
                    summaries, raw = self._summaries(batch)
                    rows += self._rows(when, request_id, summaries, raw, np.asarray(out))
                except Exception as exc:  # never let one odd batch end the writer
                    self._drop(len(batch), f"the write failed (summarizing: {exc})")
        return rows

    def _stacked(self, batches: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        if any(len(out) != len(batch) for _, _, batch, out in batches):
            raise ValueError("a batch's outputs do not match its inputs")
        inputs = np.concatenate([np.asarray(batch) for _, _, batch, _ in batches])
        outputs = np.concatenate([np.asarray(out) for _, _, _, out in batches])
        summaries, raw = self._summaries(inputs)
        rows, start = [], 0
        for when, request_id, batch, _ in batches:
            end = start + len(batch)
            rows += self._rows(when, request_id, summaries[start:end], raw[start:end], outputs[start:end])
            start = end
        return rows

    def _summaries(self, batch: Any) -> tuple[list[dict[str, list[float]]], list[bytes | None]]:
        import orjson

        summaries = self.model.summary.rows(batch)
        if not self.log_inputs:
            return summaries, [None] * len(summaries)
        raw = self.model.summary.raw(batch)
        return summaries, [orjson.dumps(x, option=orjson.OPT_SERIALIZE_NUMPY) for x in raw]

    def _rows(self, when: float, request_id: str, summaries: list[dict[str, list[float]]],
              inputs: list[bytes | None], outputs: Any) -> list[tuple[Any, ...]]:
        import orjson

        model = self.model
        rows: list[tuple[Any, ...]] = []
        for i, summary in enumerate(summaries):
            text = orjson.dumps(summary).decode()
            raw_input = None if inputs[i] is None else inputs[i].decode()  # type: ignore[union-attr]
            if model.class_names:
                c = int(outputs[i].argmax())
                rows.append((request_id, i, when, model.name, model.version, c, model.class_names[c],
                             float(outputs[i, c]), None, text, raw_input))
            else:
                rows.append((request_id, i, when, model.name, model.version, None, None, None,
                             float(outputs[i, 0]), text, raw_input))
        return rows


def _groups(batches: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """``batches`` in order, cut into groups of at most ``MAX_STACK_BYTES`` of inputs (a group
    holds at least one batch)."""
    groups: list[list[tuple[Any, ...]]] = []
    size = MAX_STACK_BYTES
    for item in batches:
        nbytes = int(getattr(item[2], "nbytes", 0))
        if size + nbytes > MAX_STACK_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += nbytes
    return groups
