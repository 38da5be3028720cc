"""RemoteTracker: a tracker in a real child process, closed without waiting for its teardown when
the tracker says close() leaves everything stored, and with it when not."""

from __future__ import annotations

import atexit
import json
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from kiln.errors import TrackingError
from kiln.tracking.base import Scope
from kiln.tracking.remote import RemoteTracker

FACTORY = "tests.tracking.test_remote:FileTracker"


class FileTracker:
    """Runs in the worker: appends every call to a file, and marks the file from an exit handler."""

    name = "file"
    durable_on_close = True  # every call has written its line before it returns

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        atexit.register(self._write, {"call": "atexit"})

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        if metrics.get("fail"):
            raise ValueError("this tracker refuses the metric 'fail'")
        self._write({"call": "log_metrics", "metrics": dict(metrics), "step": step})

    def close(self, status: str) -> None:
        self._write({"call": "close", "status": status})


class WhenTracker(FileTracker):
    """Runs in the worker: records when it was built and at which niceness the worker runs."""

    name = "when"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._write({"call": "init", "time": time.time(), "nice": os.nice(0)})


class HangingTracker(FileTracker):
    """Runs in the worker: the call for step 2 never returns, as a tracker stuck on a server would."""

    name = "hanging"

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        super().log_metrics(metrics, step, scope)
        if step == 2:
            threading.Event().wait()  # for ever: only a kill ends this process


_KEPT_OPEN: list[Any] = []


class BufferedTracker:
    """Runs in the worker: its writes sit in a file buffer that only the interpreter's teardown
    flushes (a module keeps the file alive), as a tracker that relies on finalizers would."""

    name = "buffered"

    def __init__(self, path: str, durable_on_close: bool) -> None:
        self.file = open(path, "a", encoding="utf-8", buffering=1 << 20)  # noqa: SIM115
        _KEPT_OPEN.append(self.file)
        self.durable_on_close = durable_on_close  # a lie when True: the fast exit then loses data

    def close(self, status: str) -> None:
        self.file.write(f"closed {status}\n")


@pytest.fixture()
def importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker imports the factory by path: let it find this module from any working directory."""
    root = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))


def _calls(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.usefixtures("importable_tests")
def test_close_stores_every_call_then_runs_exit_handlers(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    tracker = RemoteTracker("file", FACTORY, (str(out),), close_timeout=60)
    for step in range(3):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step, "step")
    tracker.close("completed")

    assert tracker.process.returncode == 0
    calls = _calls(out)
    assert [c["call"] for c in calls] == ["log_metrics"] * 3 + ["close", "atexit"]
    assert [c["step"] for c in calls[:3]] == [0, 1, 2]
    assert calls[3]["status"] == "completed"


@pytest.mark.usefixtures("importable_tests")
def test_a_failing_call_is_reported_by_close(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    tracker = RemoteTracker("file", FACTORY, (str(out),), close_timeout=60)
    tracker.log_metrics({"loss": 0.5}, 0, "step")
    tracker.log_metrics({"fail": 1.0}, 1, "step")
    with pytest.raises(TrackingError, match="log_metrics: ValueError: this tracker refuses the metric 'fail'"):
        tracker.close("completed")
    assert tracker.process.returncode == 1
    assert [c["call"] for c in _calls(out)] == ["log_metrics", "atexit"]


@pytest.mark.usefixtures("importable_tests")
@pytest.mark.parametrize(("durable", "kept"), [(False, "closed completed\n"), (True, "")])
def test_the_teardown_is_skipped_only_for_a_tracker_that_says_it_is_durable(
    tmp_path: Path, durable: bool, kept: str
) -> None:
    out = tmp_path / "buffered.txt"
    tracker = RemoteTracker("buffered", "tests.tracking.test_remote:BufferedTracker", (str(out), durable),
                            close_timeout=60)
    tracker.close("completed")
    assert tracker.process.returncode == 0
    assert out.read_text(encoding="utf-8") == kept


def _wait_for_lines(path: Path, n: int) -> None:
    """Poll until the worker has written ``n`` lines (a safety deadline only keeps a broken worker
    from hanging the suite)."""
    deadline = time.monotonic() + 120
    while not (path.is_file() and len(path.read_text(encoding="utf-8").splitlines()) >= n):
        assert time.monotonic() < deadline, f"the worker never wrote {n} lines to {path}"
        time.sleep(0.02)


@pytest.mark.usefixtures("importable_tests")
def test_a_worker_that_does_not_finish_within_close_timeout_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    tracker = RemoteTracker("hanging", "tests.tracking.test_remote:HangingTracker", (str(out),), close_timeout=1)
    pid = tracker.process.pid
    for step in range(4):
        tracker.log_metrics({"loss": 1.0}, step, "step")
    _wait_for_lines(out, 3)  # the worker is stuck in step 2: step 3 and close wait in the pipe
    with pytest.raises(TrackingError, match=r"^hanging did not finish within .+ s and was stopped; "
                                            r"`kiln sync RUN_DIR` sends what it missed$"):
        tracker.close("completed")
    assert tracker.process.returncode == -signal.SIGKILL  # killed, and reaped by close()
    assert pid not in {child.pid for child in psutil.Process().children(recursive=True)}
    # Step 3 and close were never handled and no exit handler ran (a SIGKILL, not an exit):
    # what a killed tracker had not stored stays in events.jsonl for `kiln sync`.
    assert [(c["call"], c["step"]) for c in _calls(out)] == [("log_metrics", 0), ("log_metrics", 1), ("log_metrics", 2)]


@pytest.mark.usefixtures("importable_tests")
def test_a_run_that_ends_within_start_after_builds_its_tracker_only_after_the_end(tmp_path: Path) -> None:
    """A short run pays nothing for its tracker while it trains: the worker only collects calls,
    builds the tracker once the parent has closed, delivers everything, at normal priority."""
    out = tmp_path / "calls.jsonl"
    tracker = RemoteTracker("when", "tests.tracking.test_remote:WhenTracker", (str(out),),
                            close_timeout=60, start_after=3600)
    for step in range(3):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step, "step")
    assert tracker.collecting.wait(60), "the worker never started collecting"
    closing = time.time()
    tracker.close("completed")  # returns long before 3600 s: the end of the run starts the worker

    calls = _calls(out)
    assert [c["call"] for c in calls] == ["init"] + ["log_metrics"] * 3 + ["close", "atexit"]
    assert calls[0]["time"] >= closing  # nothing was built while the "run" went on
    assert calls[0]["nice"] == os.nice(0)  # the finisher does not crawl at low priority
    assert [c["step"] for c in calls[1:4]] == [0, 1, 2]


@pytest.mark.usefixtures("importable_tests")
def test_a_run_longer_than_start_after_gets_a_live_worker_at_nice_10(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    tracker = RemoteTracker("when", "tests.tracking.test_remote:WhenTracker", (str(out),),
                            close_timeout=60, start_after=0.01)
    tracker.log_metrics({"loss": 1.0}, 0, "step")
    deadline = time.monotonic() + 60
    while not (out.is_file() and any(c["call"] == "log_metrics" for c in _calls(out))):
        assert tracker.process.poll() is None and time.monotonic() < deadline, "the worker never went live"
        time.sleep(0.02)
    tracker.close("completed")

    calls = _calls(out)
    assert [c["call"] for c in calls] == ["init", "log_metrics", "close", "atexit"]
    assert calls[0]["nice"] == min(os.nice(0) + 10, 19)  # beside training, it yields
