"""The fan-out: events.jsonl first, a failing or slow tracker never stalls or kills training.

No test here times anything: a slow tracker is one that blocks until the test lets it go, so what
happened while it was stuck (records dropped, records left unsent, training finished) is exact.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from tests.tracking.conftest import live_workers
from typing_extensions import override

from kiln.testing import tiny_config
from kiln.tracking import JsonlTracker, MultiTracker, read_events
from kiln.tracking.base import Scope
from kiln.train import Callback, Trainer
from kiln.train.state import TrainState

# Only keeps a wrong answer from hanging the suite: a right one never comes near it.
SAFETY = 120.0


class Recorder:
    name = "recorder"

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.calls: list[tuple[str, Any]] = []
        self.got_metrics = threading.Event()

    def _record(self, method: str, payload: Any) -> None:
        if method == self.fail_on:
            raise ConnectionError("tracking server unreachable")
        self.calls.append((method, payload))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._record("log_params", params)

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        self._record("log_metrics", (dict(metrics), step, scope))
        self.got_metrics.set()

    def log_event(self, event: str, data: Mapping[str, Any]) -> None:
        self._record("log_event", event)

    def log_artifact(self, path: Path) -> None:
        self._record("log_artifact", path)

    def close(self, status: str) -> None:
        self._record("close", status)


class BlockedRecorder(Recorder):
    """A tracker stuck in its first call (log_params) until the test releases it: the slowest
    tracker there is, with no clock involved."""

    name = "blocked"

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.release = threading.Event()

    @override
    def log_params(self, params: Mapping[str, Any]) -> None:
        self.inside.set()
        assert self.release.wait(SAFETY), "the test never released the tracker"
        super().log_params(params)


def _blocked(multi: MultiTracker, tracker: BlockedRecorder) -> None:
    """Send params and wait until the fan-out thread is stuck inside the tracker with them."""
    multi.log_params({"a": 1})
    assert tracker.inside.wait(SAFETY), "the fan-out thread never called the tracker"


def test_every_record_reaches_trackers_in_order(tmp_path: Path) -> None:
    recorder = Recorder()
    multi = MultiTracker(JsonlTracker(tmp_path / "events.jsonl"), {"recorder": lambda: recorder})
    for step in range(20):
        multi.log_metrics({"loss": float(step)}, step, "step")
    multi.close("completed")
    steps = [payload[1] for method, payload in recorder.calls if method == "log_metrics"]
    assert steps == list(range(20))
    assert recorder.calls[-1] == ("close", "completed")
    assert len([r for r in read_events(tmp_path / "events.jsonl") if r["event"] == "metrics"]) == 20


class BulkRecorder(BlockedRecorder):
    """Also takes several steps' metrics in one call, as the MLflow tracker does."""

    def log_metric_records(self, records: list[tuple[dict[str, float], int, Scope]]) -> None:
        self._record("log_metric_records", [step for _, step, _ in records])


def test_consecutive_metrics_reach_a_bulk_tracker_in_one_call_per_run_and_in_order(tmp_path: Path) -> None:
    bulk, plain = BulkRecorder(), Recorder()
    multi = MultiTracker(
        JsonlTracker(tmp_path / "events.jsonl"), {"bulk": lambda: bulk, "plain": lambda: plain}
    )
    _blocked(multi, bulk)  # everything below waits in the buffer and is taken as one batch
    for step in range(50):
        multi.log_metrics({"loss": float(step)}, step, "step")
    multi.log_event("epoch_end", {"epoch": 1})
    multi.log_metrics({"loss": 0.0}, 50, "epoch")
    bulk.release.set()
    multi.close("completed")

    assert bulk.calls == [
        ("log_params", {"a": 1}), ("log_metric_records", list(range(50))), ("log_event", "epoch_end"),
        ("log_metric_records", [50]), ("close", "completed"),
    ]
    assert [payload[1] for method, payload in plain.calls if method == "log_metrics"] == list(range(51))


def test_failing_tracker_is_reported_once_and_training_goes_on(tmp_path: Path) -> None:
    failures: list[str] = []
    recorder = Recorder(fail_on="log_metrics")
    multi = MultiTracker(
        JsonlTracker(tmp_path / "events.jsonl"), {"recorder": lambda: recorder},
        on_failure=lambda name, exc: failures.append(f"{name}: {exc}"),
    )
    for step in range(5):
        multi.log_metrics({"loss": 1.0}, step, "step")
    multi.close("completed")
    assert failures == ["recorder: tracking server unreachable"]
    assert multi.failures == {"recorder": "ConnectionError: tracking server unreachable"}
    assert [r["event"] for r in read_events(tmp_path / "events.jsonl")].count("tracker_failed") == 1


def test_a_stuck_tracker_makes_the_bounded_buffer_drop_instead_of_blocking_the_caller(tmp_path: Path) -> None:
    stuck = BlockedRecorder()
    multi = MultiTracker(JsonlTracker(tmp_path / "events.jsonl"), {"stuck": lambda: stuck}, queue_size=5)
    _blocked(multi, stuck)
    for step in range(40):  # would never return if logging waited for the tracker
        multi.log_metrics({"loss": 1.0}, step, "step")
    assert multi.dropped == 35  # 5 fit in the buffer
    stuck.release.set()
    multi.close("completed")
    assert [payload[1] for method, payload in stuck.calls if method == "log_metrics"] == [0, 1, 2, 3, 4]
    assert multi.unsent == 0
    assert [r["step"] for r in read_events(tmp_path / "events.jsonl") if r["event"] == "metrics"] == list(range(40))


def test_close_gives_up_on_a_stuck_tracker_and_counts_the_records_left_unsent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = BlockedRecorder()
    multi = MultiTracker(JsonlTracker(tmp_path / "events.jsonl"), {"stuck": lambda: stuck})
    _blocked(multi, stuck)
    for step in range(7):
        multi.log_metrics({"loss": 1.0}, step, "step")
    try:
        with caplog.at_level(logging.WARNING, "kiln.tracking"):
            multi.close("completed", timeout=0.01)  # the tracker never returns: any timeout is too short
    finally:
        stuck.release.set()
    assert multi.unsent == 7
    assert [r.getMessage() for r in caplog.records] == [
        "tracking: gave up waiting for slow trackers after 0 s; 7 records not sent "
        "(they are in logs/events.jsonl: `kiln sync` sends them later)"
    ]
    records = read_events(tmp_path / "events.jsonl")
    assert [r["step"] for r in records if r["event"] == "metrics"] == list(range(7))
    assert records[-1] == {**records[-1], "event": "closed", "status": "completed"}


class WaitForFailure(Callback):
    """At the end of the first epoch, hold training until the fan-out has put a tracker failure in
    events.jsonl: the rest of the fit then runs with the tracker known to be broken. (It runs
    before the built-in tracking callback, so before the first epoch's metrics are logged.)"""

    @override
    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch != 0:
            return
        path = state.run_dir / "logs" / "events.jsonl"
        deadline = time.monotonic() + SAFETY
        while not any(r.get("event") == "tracker_failed" for r in _complete_lines(path)):
            if time.monotonic() > deadline:
                return  # let the fit finish: the test's assertions then say what went wrong
            time.sleep(0.02)  # polling a file another thread writes: nothing to wait on


def _complete_lines(path: Path) -> list[dict[str, Any]]:
    """The records of every complete line written so far (the writer may be mid-line)."""
    lines = path.read_bytes().split(b"\n")[:-1]
    return [json.loads(line) for line in lines]


def test_a_tracker_that_cannot_start_is_reported_during_the_fit_and_the_fit_completes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the MLflow store's directory should be\n")
    # mlflow_start_delay=0: the worker opens the store at once, instead of the fit (held by
    # WaitForFailure) sitting through the default 30 s before the worker even tries.
    cfg = tiny_config(tmp_path / "runs", f"tracking.uri=sqlite:///{blocker}/mlflow.db",
                      "tracking.system_metrics_interval=0.05", "tracking.mlflow_start_delay=0",
                      backends=("jsonl", "mlflow"))
    workers_before = live_workers()
    threads_before = set(threading.enumerate())
    with caplog.at_level(logging.WARNING, "kiln.tracking"):
        result = Trainer(cfg, quiet=True, callbacks=[WaitForFailure()]).fit()

    reason = f"FileExistsError: [Errno 17] File exists: '{blocker}'"  # the worker's own words
    error = f"TrackingError: {reason}"
    assert result.status == "completed"
    records = read_events(result.run_dir / "logs" / "events.jsonl")
    failed = [r for r in records if r["event"] == "tracker_failed"]
    assert [(r["tracker"], r["error"]) for r in failed] == [("mlflow", error)]
    # Seen during the fit, in the first epoch: the remaining epochs ran without the tracker.
    first_epoch = next(i for i, r in enumerate(records) if r["event"] == "metrics" and r["scope"] == "epoch")
    assert [r["event"] for r in records].index("fit_start") < records.index(failed[0]) < first_epoch
    assert [r["event"] for r in records if r["event"] != "tracker_failed" and r.get("scope") != "system"] == [
        "params", "fit_start", "metrics", "metrics", "fit_end", "metrics", "summary",
        "artifact", "artifact", "artifact", "artifact", "model", "closed",
    ]
    assert records[-1]["status"] == "completed"
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["trackers"] == {"used": ["jsonl", "mlflow"], "failed": {"mlflow": error}}
    assert [r.getMessage() for r in caplog.records] == [
        f"tracking: tracker 'mlflow' failed and is disabled for this run: {reason}"
    ]
    assert live_workers() == workers_before  # the broken worker is gone, not left behind
    left = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert left == []  # the fan-out thread and the worker's reader ended with the fit


def _on_disk(path: Path) -> list[dict[str, Any]]:
    """What another process would read now: the file's bytes, not this process's buffer."""
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_step_metrics_wait_in_the_buffer_and_everything_else_goes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    jsonl = JsonlTracker(path, flush_every=3600)
    jsonl.log_metrics({"train_loss": 0.5}, 1, "step")
    jsonl.log_metrics({"cpu_percent": 50.0}, 1, "system")
    assert _on_disk(path) == []  # deferred: no system call for them
    jsonl.log_metrics({"val_loss": 0.4}, 1, "epoch")  # not deferred, and takes the others along
    assert [r["scope"] for r in _on_disk(path)] == ["step", "system", "epoch"]
    jsonl.log_metrics({"train_loss": 0.3}, 2, "step")
    offset = jsonl.tell()  # a checkpoint's offset: everything before it is in the file
    assert offset == path.stat().st_size and _on_disk(path)[-1]["step"] == 2
    jsonl.log_metrics({"train_loss": 0.2}, 3, "step")
    jsonl.close("completed")
    assert [r.get("step") for r in _on_disk(path)][-2:] == [3, None]


def test_the_fan_out_round_that_hands_step_metrics_to_trackers_has_put_them_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    recorder = Recorder()
    multi = MultiTracker(JsonlTracker(path, flush_every=3600), {"recorder": lambda: recorder})
    multi.log_metrics({"train_loss": 0.5}, 1, "step")
    assert _on_disk(path) == []  # deferred, and nobody calls flush
    assert recorder.got_metrics.wait(SAFETY), "the fan-out thread never delivered the record"
    # Each round flushes events.jsonl before it feeds the trackers: a tracker never holds a
    # record the file lacks, and the file lags the caller by one round at most.
    assert [r["step"] for r in _on_disk(path)] == [1]
    multi.close("completed")
