"""``logs/events.jsonl``: one JSON object per line, written first; the local truth.

Every record reaches the file (the OS, not only this process's buffer) before the call returns,
except step and system metrics: those may wait up to ``FLUSH_EVERY`` seconds for the next write
or the fan-out thread's next round, so that logging every step costs no system call each time. A
process killed with SIGKILL can lose those last moments of step metrics and nothing else; a
checkpoint flushes first, so a resume never misses what its checkpoint points past.

A file that cannot be written (a full disk, a file system gone read-only) never raises from a log
call, which may come from any thread or from a run's clean-up after another error: the first
failure is reported once, on the log, and the records from then on are dropped. The next
checkpoint then refuses to commit (``tell`` raises TrackingError): it would point past records the
file lost, so the run stops there, its previous checkpoint intact, until there is room to resume.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from kiln.errors import TrackingError
from kiln.tracking.base import Scope, Tracker, TrackerSetup

log = logging.getLogger("kiln.tracking")

# one line per record; numpy scalars as numbers; non-string keys (e.g. class ids) as strings
_ORJSON = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
FLUSH_EVERY = 0.2  # seconds a step or system metric may wait in the buffer
_DEFERRED_SCOPES = frozenset({"step", "system"})  # frequent, and each soon followed by another


def _clean(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as null rather than produce an invalid line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic) and value.ndim == 0:  # a numpy scalar: a number, as orjson writes it
        return _clean(value.item())
    return str(value)


class JsonlTracker:
    name = "jsonl"

    def __init__(self, path: Path, flush_every: float = FLUSH_EVERY) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.flush_every = flush_every
        self._file = path.open("ab", buffering=1 << 16)  # bytes: orjson writes UTF-8 directly
        self._lock = threading.Lock()  # the system-metrics sampler writes from its own thread
        self._flushed_at = time.time()
        self.broken: OSError | None = None  # why the file could not be written, once it could not

    def _write(self, record: dict[str, Any], deferred: bool = False) -> None:
        now = time.time()
        record = {"time": round(now, 3), **record}
        try:  # the common case: orjson writes NaN/Inf as null, as _clean does, in ~1 us
            line = orjson.dumps(record, option=_ORJSON)
        except TypeError:  # a value orjson cannot encode (a tensor, a huge int): walk the record
            line = (json.dumps(_clean(record), separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self.broken is not None:
                return
            try:
                self._file.write(line)
                if not deferred or now - self._flushed_at >= self.flush_every:
                    self._file.flush()
                    self._flushed_at = now
            except OSError as exc:
                self._break(exc)

    def flush(self) -> None:
        """Hand deferred records to the OS (the fan-out thread calls this every round)."""
        with self._lock:
            if not self._file.closed and self.broken is None:
                try:
                    self._file.flush()
                except OSError as exc:
                    self._break(exc)
                self._flushed_at = time.time()

    def tell(self) -> int:
        """Bytes written so far, all in the file: a checkpoint records it, so a resume can cut the
        file back to it. TrackingError once the file could not be written: the records since are
        lost, and a checkpoint must not point past them."""
        with self._lock:
            if self.broken is None:
                try:
                    self._file.flush()
                    return self._file.tell()
                except OSError as exc:
                    self._break(exc)
            assert self.broken is not None
            raise TrackingError(
                f"{self.path} could not be written ({_reason(self.broken)}): the records since are "
                "lost, and a checkpoint must not point past lost records, so the run stops here. Its "
                "previous checkpoint is intact",
                hint="free space on that disk (or make it writable again), then resume the run: "
                     "`kiln resume` its run directory",
            )

    def _break(self, exc: OSError) -> None:
        """Stop writing for good (another attempt would tear lines further) and say so, once."""
        self.broken = exc
        log.warning(
            "%s could not be written (%s): records from now on are lost, and no checkpoint can be "
            "committed after them", self.path, _reason(exc),
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._write({"event": "params", "params": dict(params)})

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        self._write({"event": "metrics", "scope": scope, "step": step, "metrics": dict(metrics)},
                    deferred=scope in _DEFERRED_SCOPES)

    def log_event(self, event: str, data: Mapping[str, Any]) -> None:
        self._write({"event": event, **data})

    def log_artifact(self, path: Path) -> None:
        self._write({"event": "artifact", "path": str(path)})

    def close(self, status: str) -> None:
        if not self._file.closed:
            self._write({"event": "closed", "status": status})
            with self._lock, contextlib.suppress(OSError):  # broken: what is still buffered is lost
                self._file.close()


def _reason(exc: OSError) -> str:
    """``No space left on device, ENOSPC``: the OS's words and the errno's name."""
    name = errno.errorcode.get(exc.errno or 0)
    return ", ".join(part for part in (exc.strerror or str(exc), name) if part)


def prepare(setup: TrackerSetup) -> Callable[[], Tracker]:
    """The TRACKERS entry. A run writes its events.jsonl itself, before any other tracker (the
    fan-out never builds this one); the entry names it, and lets the contract suite reach it."""
    return functools.partial(JsonlTracker, setup.logs_dir / "events.jsonl")


def read_events(path: Path) -> list[dict[str, Any]]:
    """All records of an events.jsonl (a torn last line, from a killed process, is skipped)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
