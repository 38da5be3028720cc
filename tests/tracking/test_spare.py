"""Spare tracker workers (kiln.tracking.spare): started early, preloaded, then adopted by the run
with its descriptors (the finisher lock, the log file); a spare nobody adopts goes away by itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import psutil
import pytest

from kiln.errors import TrackingError
from kiln.testing import tiny_config
from kiln.tracking import finisher, mlflow_process, spare
from kiln.tracking.base import Scope
from kiln.tracking.remote import RemoteTracker, worker_command
from kiln.train import Trainer

FACTORY = "tests.tracking.test_spare:DescriptorTracker"
PRELOAD = "tests.tracking.test_spare:mark_preloaded"
FD_VARIABLE = "KILN_TEST_HANDED_FD"


def failing_preload(path: str) -> None:
    """A preload that fails as a store that cannot be opened would."""
    raise OSError(f"cannot open the store at {path}")


def mark_preloaded(path: str) -> None:
    """Runs in the spare before adoption: says which process preloaded."""
    Path(path).write_text(json.dumps({"pid": os.getpid()}), encoding="utf-8")


class DescriptorTracker:
    """Runs in the worker: records its pid and the file behind the descriptor it was handed, and
    writes a line to stderr (which adoption points at the run's log file)."""

    name = "descriptor"
    durable_on_close = True

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        handed = os.fstat(int(os.environ[FD_VARIABLE]))
        print("stderr of the adopted worker", file=sys.stderr, flush=True)
        self._write({"pid": os.getpid(), "handed": [handed.st_dev, handed.st_ino]})

    def _write(self, record: dict[str, object]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        self._write({"step": step, "metrics": dict(metrics)})

    def close(self, status: str) -> None:
        self._write({"closed": status})


@pytest.fixture()
def importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _start_spare(marker: Path) -> spare.SpareWorker:
    command = [*worker_command(60, False, 0), "--preload", PRELOAD, "--preload-arg", str(marker)]
    return spare.start(command, "test", {})


@pytest.mark.usefixtures("importable_tests")
def test_a_spare_preloads_then_works_as_the_adopting_trackers_worker(tmp_path: Path) -> None:
    marker, out, log, handed = (tmp_path / n for n in ("preloaded.json", "calls.jsonl", "worker.log", "lock"))
    worker = _start_spare(marker)
    _wait_for(marker)  # preloaded before anyone adopted it
    handed.write_text("x", encoding="utf-8")
    with handed.open("a") as lock_file:
        tracker = RemoteTracker("descriptor", FACTORY, (str(out),), 60, log_path=log,
                                env_fds={FD_VARIABLE: lock_file.fileno()}, spare=worker)
    tracker.log_metrics({"loss": 0.5}, 3, "step")
    tracker.close("completed")

    assert tracker.process is worker.process
    calls = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    stat = handed.stat()
    assert calls == [
        {"pid": worker.process.pid, "handed": [stat.st_dev, stat.st_ino]},
        {"step": 3, "metrics": {"loss": 0.5}},
        {"closed": "completed"},
    ]
    assert json.loads(marker.read_text(encoding="utf-8"))["pid"] == worker.process.pid
    assert "stderr of the adopted worker" in log.read_text(encoding="utf-8")
    assert worker.process.wait(timeout=30) == 0


@pytest.mark.usefixtures("importable_tests")
def test_a_spare_nobody_adopts_exits_and_one_let_go_is_replaced(tmp_path: Path) -> None:
    unwanted = _start_spare(tmp_path / "a.json")
    _wait_for(tmp_path / "a.json")
    unwanted.channel.close()  # what the run's process exiting does
    assert unwanted.process.wait(timeout=30) == 0

    let_go = _start_spare(tmp_path / "b.json")
    let_go.discard()  # not killed (it may be creating a store's tables): it leaves once preloaded
    out, handed = tmp_path / "calls.jsonl", tmp_path / "lock"
    handed.write_text("x", encoding="utf-8")
    with handed.open("a") as lock_file:
        tracker = RemoteTracker("descriptor", FACTORY, (str(out),), 60,
                                env_fds={FD_VARIABLE: lock_file.fileno()}, spare=let_go)
    tracker.close("completed")
    assert tracker.process is not let_go.process and not let_go.adopted
    assert let_go.process.wait(timeout=30) == 0
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["pid"] == tracker.process.pid


@pytest.mark.usefixtures("importable_tests")
def test_a_failed_preload_is_the_trackers_error_at_adoption(tmp_path: Path) -> None:
    command = [*worker_command(60, False, 0), "--preload", "tests.tracking.test_spare:failing_preload",
               "--preload-arg", "nowhere"]
    worker = spare.start(command, "test", {})
    handed = tmp_path / "lock"
    handed.write_text("x", encoding="utf-8")
    with handed.open("a") as lock_file:
        tracker = RemoteTracker("descriptor", FACTORY, (str(tmp_path / "calls.jsonl"),), 60,
                                env_fds={FD_VARIABLE: lock_file.fileno()}, spare=worker)
    assert worker.process.wait(timeout=60) == 1
    with pytest.raises(TrackingError, match="OSError: cannot open the store at nowhere"):
        tracker.log_metrics({"loss": 0.5}, 1, "step")
    assert not (tmp_path / "calls.jsonl").exists()  # the tracker was never built


def test_a_run_adopts_the_prestarted_mlflow_worker_which_holds_the_lock(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "training.epochs=2", backends=("jsonl", "mlflow"))
    mlflow_process.prestart(cfg)
    started = mlflow_process._spare
    assert started is not None and started.alive()

    result = Trainer(cfg, quiet=True).fit()
    logs = result.run_dir / "logs"
    assert started.adopted
    # the lock file names its holder: the spare, from its adoption (the finisher after the run)
    assert (logs / finisher.LOCK_FILE).read_text(encoding="utf-8") == str(started.process.pid)
    assert finisher.wait_for_finisher(result.run_dir, timeout=120)
    outcome = json.loads((logs / finisher.OUTCOME_FILE).read_text(encoding="utf-8"))
    link = json.loads((logs / "mlflow.json").read_text(encoding="utf-8"))
    assert outcome["ok"] and outcome["run_id"] == link["run_id"]


def test_a_spare_for_other_settings_is_stopped_not_adopted(tmp_path: Path) -> None:
    mlflow_process.prestart(tiny_config(tmp_path, "tracking.mlflow_start_delay=5", backends=("mlflow",)))
    started = mlflow_process._spare
    assert started is not None
    cfg = tiny_config(tmp_path, "tracking.mlflow_start_delay=7")
    assert mlflow_process._take_spare(mlflow_process._key(
        str(started.key[0]), cfg.tracking.close_timeout, cfg.tracking.mlflow_start_delay)) is None
    assert started.process.wait(timeout=30) is not None and not started.adopted


def data_that_fails_once_the_spare_runs(pid_file: str) -> None:
    """A ``data.target`` builder, run by ``kiln train``: waits for its spare MLflow worker, names
    it, then fails as a missing dataset would (after the spare started, before training)."""
    from kiln.errors import DataError

    deadline = time.monotonic() + 60
    while not (children := [c.pid for c in psutil.Process().children() if "kiln.tracking.worker" in c.cmdline()]):
        if time.monotonic() > deadline:
            raise DataError("no spare worker was started")
        time.sleep(0.05)
    Path(pid_file).write_text(str(children[0]), encoding="utf-8")
    raise DataError("the data is not there (on purpose)")


@pytest.mark.usefixtures("importable_tests")
def test_a_run_that_fails_before_training_leaves_no_worker_behind(tmp_path: Path) -> None:
    pid_file = tmp_path / "spare.pid"
    config = tmp_path / "bad.yaml"
    config.write_text(json.dumps({
        "data": {"target": "tests.tracking.test_spare:data_that_fails_once_the_spare_runs",
                 "options": {"pid_file": str(pid_file)}},
        "model": {"name": "mlp"}, "run": {"output_dir": str(tmp_path / "runs")},
    }), encoding="utf-8")
    kiln = Path(sys.executable).with_name("kiln")
    done = subprocess.run([str(kiln), "train", "-c", str(config)], capture_output=True, text=True, timeout=300)
    assert "the data is not there (on purpose)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    pid = int(pid_file.read_text(encoding="utf-8"))
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the spare worker outlived the failed run"
        time.sleep(0.1)


def test_a_second_prestart_for_the_same_settings_keeps_the_first_spare(tmp_path: Path) -> None:
    """kiln train starts one, then the run it finds in run.dir resumes and asks again."""
    cfg = tiny_config(tmp_path, backends=("mlflow",))
    mlflow_process.prestart(cfg)
    first = mlflow_process._spare
    mlflow_process.prestart(cfg)
    assert first is not None and mlflow_process._spare is first and first.alive()
    first.discard()
    assert first.process.wait(timeout=60) == 0
