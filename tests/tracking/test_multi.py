"""The fan-out: events.jsonl first, a failing or slow tracker never stalls or kills training."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kiln.testing import tiny_config
from kiln.tracking import JsonlTracker, MultiTracker, read_events
from kiln.tracking.base import Scope
from kiln.train import Trainer


class Recorder:
    name = "recorder"

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.calls: list[tuple[str, Any]] = []

    def _record(self, method: str, payload: Any) -> None:
        if method == self.fail_on:
            raise ConnectionError("tracking server unreachable")
        time.sleep(self.delay)
        self.calls.append((method, payload))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._record("log_params", params)

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        self._record("log_metrics", (dict(metrics), step, scope))

    def log_event(self, event: str, data: Mapping[str, Any]) -> None:
        self._record("log_event", event)

    def log_artifact(self, path: Path) -> None:
        self._record("log_artifact", path)

    def close(self, status: str) -> None:
        self._record("close", status)


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


class BulkRecorder(Recorder):
    """Also takes several steps' metrics in one call, as the MLflow tracker does."""

    def log_metric_records(self, records: list[tuple[dict[str, float], int, Scope]]) -> None:
        self._record("log_metric_records", [step for _, step, _ in records])


def test_consecutive_metrics_reach_a_bulk_tracker_in_few_calls_and_in_order(tmp_path: Path) -> None:
    bulk, plain = BulkRecorder(), Recorder()
    multi = MultiTracker(
        JsonlTracker(tmp_path / "events.jsonl"), {"bulk": lambda: bulk, "plain": lambda: plain}
    )
    multi.flush()  # both trackers are built; the next records queue up during the thread's nap
    for step in range(50):
        multi.log_metrics({"loss": float(step)}, step, "step")
    multi.log_event("epoch_end", {"epoch": 1})
    multi.log_metrics({"loss": 0.0}, 50, "epoch")
    multi.close("completed")

    bulk_calls = [payload for method, payload in bulk.calls if method == "log_metric_records"]
    assert [step for steps in bulk_calls for step in steps] == list(range(51))
    assert len(bulk_calls) < 10  # the 50 step records arrived within a few naps of the thread
    assert [method for method, _ in bulk.calls][-2:] == ["log_metric_records", "close"]
    event_at = [method for method, _ in bulk.calls].index("log_event")
    assert bulk.calls[event_at - 1][1][-1] == 49 and bulk.calls[event_at + 1][1] == [50]  # order kept
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


def test_slow_tracker_does_not_slow_the_caller(tmp_path: Path) -> None:
    slow = Recorder(delay=0.05)
    multi = MultiTracker(JsonlTracker(tmp_path / "events.jsonl"), {"slow": lambda: slow}, queue_size=5)
    started = time.perf_counter()
    for step in range(40):  # 40 x 50 ms = 2 s if it were synchronous
        multi.log_metrics({"loss": 1.0}, step, "step")
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert multi.dropped > 0  # the bounded queue dropped records rather than block
    multi.close("completed", timeout=10)
    assert len([r for r in read_events(tmp_path / "events.jsonl") if r["event"] == "metrics"]) == 40


def test_tracker_that_cannot_even_start_does_not_stop_a_run(tmp_path: Path) -> None:
    def broken() -> Recorder:
        raise ConnectionError("no server")

    cfg = tiny_config(tmp_path)
    trainer = Trainer(cfg, quiet=True)
    result = trainer.fit()
    assert result.status == "completed"
    multi = MultiTracker(JsonlTracker(tmp_path / "e.jsonl"), {"broken": broken})
    multi.log_params({"a": 1})
    multi.close("completed")
    assert "broken" in multi.failures
    assert threading.active_count() < 50
    assert json.loads((tmp_path / "e.jsonl").read_text().splitlines()[0])["event"] in {"params", "tracker_failed"}


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


def test_step_metrics_reach_the_file_within_a_round_of_the_fan_out(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    multi = MultiTracker(JsonlTracker(path, flush_every=3600), {"recorder": Recorder})
    multi.log_metrics({"train_loss": 0.5}, 1, "step")
    deadline = time.monotonic() + 5
    while not _on_disk(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["step"] for r in _on_disk(path)] == [1]  # nobody called flush: the thread did
    multi.close("completed")
