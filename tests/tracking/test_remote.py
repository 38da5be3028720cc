"""RemoteTracker: a tracker in a real child process, closed without waiting for its teardown when
the tracker says close() leaves everything stored, and with it when not."""

from __future__ import annotations

import atexit
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
