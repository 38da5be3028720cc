"""The monitoring log: one SQLite database (``monitor.db``) in the server's state directory.

Two tables. ``predictions``: one row per instance predicted (request id, item index within the
request, time, model name and version, predicted class and its probability or the regression
value, a JSON summary of the input and, only under ``--log-inputs``, the instance itself).
``feedback``: one row per (request id, item) a true label was given for, with the prediction it
was joined with and whether it was right; the UNIQUE constraint is what makes the same feedback
sent twice count once. ``feedback_counts`` keeps the all-time totals per outcome, so pruning old
rows never makes the ``kiln_feedback_total`` counter go down.

Several processes (``kiln serve --workers N``) write the same file: WAL mode lets readers run
beside one writer, ``busy_timeout`` makes a writer wait for the lock instead of failing, and
``synchronous=NORMAL`` makes each commit survive the death of the process (SIGKILL) though not
of the machine (power loss may take the last commits; the file stays consistent).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.errors import ServeError

DB_NAME = "monitor.db"
BUSY_TIMEOUT_MS = 10_000  # another worker's commit takes milliseconds; ten seconds is a stuck lock
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT NOT NULL,
    item INTEGER NOT NULL,        -- the instance's index within its request
    time REAL NOT NULL,           -- unix seconds, when the answer was computed
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    class INTEGER,                -- predicted class index (NULL for a regression model)
    class_name TEXT,
    probability REAL,             -- the predicted class's probability
    value REAL,                   -- a regression model's prediction (NULL for a classifier)
    summary TEXT NOT NULL,        -- JSON: {"feature": [...]} or {"channel_mean": [...], "channel_std": [...]}
    input TEXT,                   -- the whole instance as JSON, only under --log-inputs
    UNIQUE (request_id, item)
);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL,
    item INTEGER NOT NULL,
    time REAL NOT NULL,           -- when the feedback arrived
    model TEXT NOT NULL,          -- of the prediction it was joined with
    version TEXT NOT NULL,
    label INTEGER NOT NULL,       -- the true class index
    label_name TEXT NOT NULL,
    predicted INTEGER NOT NULL,   -- the class the model predicted
    correct INTEGER NOT NULL,     -- 1 when label = predicted
    UNIQUE (request_id, item)
);
CREATE INDEX IF NOT EXISTS feedback_time ON feedback (model, version, time);
CREATE TABLE IF NOT EXISTS feedback_counts (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    outcome TEXT NOT NULL,        -- correct | wrong
    n INTEGER NOT NULL,
    PRIMARY KEY (model, version, outcome)
);
"""


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the log at ``path`` in WAL mode; each process and thread opens its own.
    ``readonly`` opens an existing file without ever creating or changing it (``kiln monitor``)."""
    try:
        if readonly:
            connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                         timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        else:
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                         check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA journal_size_limit=16777216")  # the WAL shrinks to 16 MiB
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        raise ServeError(f"cannot open the prediction log {path}: {exc}",
                         hint="choose a writable --state-dir, or turn the log off with "
                              "--no-prediction-log") from None
    return connection


def create(state_dir: Path) -> Path:
    """Create ``state_dir`` and the log's tables if needed; the database path. Called once in
    the parent process, so a state directory that cannot be written stops the start clearly."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServeError(f"cannot create the state directory {state_dir}: {exc.strerror}",
                         hint="choose a writable --state-dir, or turn the log off with "
                              "--no-prediction-log") from None
    path = state_dir / DB_NAME
    connection = connect(path)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ServeError(f"{path} was written by a newer kiln (log schema {version}, this kiln "
                             f"knows {SCHEMA_VERSION}); upgrade kiln or choose another --state-dir")
        connection.executescript(SCHEMA)
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except sqlite3.Error as exc:
        raise ServeError(f"cannot write the prediction log {path}: {exc}",
                         hint="choose a writable --state-dir, or --no-prediction-log") from None
    finally:
        connection.close()
    return path


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the write lock up front, so the busy timeout applies) ... COMMIT."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


PREDICTION_COLUMNS = ("request_id", "item", "time", "model", "version", "class", "class_name",
                      "probability", "value", "summary", "input")


def insert_predictions(connection: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append rows (in PREDICTION_COLUMNS order) in one transaction: the commit is the moment a
    prediction counts as logged."""
    marks = ", ".join("?" * len(PREDICTION_COLUMNS))
    with transaction(connection):
        connection.executemany(f"INSERT OR IGNORE INTO predictions ({', '.join(PREDICTION_COLUMNS)}) "
                               f"VALUES ({marks})", rows)


@dataclass(frozen=True)
class Retention:
    """How much of the log is kept: rows younger than ``days``, in at most ``max_mb`` MiB."""

    days: float = 30.0
    max_mb: float = 1024.0


def prune(connection: sqlite3.Connection, retention: Retention, now: float | None = None) -> int:
    """Delete predictions (and feedback) older than the retention, then the oldest predictions
    until the rows fit in ``max_mb``; the number of predictions deleted. Freed pages are reused
    by later rows, so the file stops growing at about ``max_mb`` (plus the WAL) without VACUUM."""
    cutoff = (time.time() if now is None else now) - retention.days * 86400
    with transaction(connection):
        deleted = connection.execute("DELETE FROM predictions WHERE time < ?", (cutoff,)).rowcount
        connection.execute("DELETE FROM feedback WHERE time < ?", (cutoff,))
        used = used_bytes(connection)
        limit = retention.max_mb * 2**20
        if used > limit:
            rows = connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
            # rows are about the same size: drop the oldest share, to 90% of the limit
            excess = max(1, int(rows * (1 - 0.9 * limit / used)))
            deleted += connection.execute(
                "DELETE FROM predictions WHERE rowid IN "
                "(SELECT rowid FROM predictions ORDER BY time LIMIT ?)", (excess,)).rowcount
    return deleted


def used_bytes(connection: sqlite3.Connection) -> int:
    """Bytes the database's live pages take (the file minus its free pages)."""
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    free = connection.execute("PRAGMA freelist_count").fetchone()[0]
    size = connection.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


class SharedConnection:
    """One connection used by several threads in turn (request handlers run in a thread pool):
    sqlite3 objects are not safe to use from two threads at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connection = connect(path)
        self.lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.connection

    def close(self) -> None:
        with self.lock:
            self.connection.close()
