"""``kiln sync`` exactly: hand-written run directories replayed into a real SQLite MLflow store.

No training and no server: each test builds a run dir's files by hand (events.jsonl, config.yaml,
environment.json, summary.json, the CSV log) and replays it with ``kiln.tracking.sync``, then reads
back from MLflow what it holds (params, every metric value with its step, tags, status, artifacts).
The store is created once per module (MLflow's first open runs its migrations, seconds) and copied
for each test. The outage path through a real ``mlflow server`` and a trained run is in
``test_mlflow.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kiln.errors import KilnError, TrackingError
from kiln.tracking import finisher, sync
from kiln.tracking.mlflow import MODEL_TAG, MlflowTracker

RUN = "tiny_20261206_120000"
ENVIRONMENT = {
    "kiln_version": "9.9.9", "config_hash": "c0ffee", "hostname": "box",
    "git": {"commit": "abc123", "dirty": True}, "command": ["kiln", "train"], "user": "ada",
}
PARAMS = {"event": "params", "params": {"lr": 0.01, "hidden": [16]}}
SUMMARY = {"event": "summary", "status": "completed", "best_epoch": 2}


def metrics(step: int, scope: str = "epoch", **values: Any) -> dict[str, Any]:
    return {"event": "metrics", "scope": scope, "step": step, "metrics": values}


EVENTS: list[dict[str, Any]] = [
    PARAMS,
    {"event": "fit_start", "epochs": 2},
    metrics(5, "step", loss=0.9),
    metrics(5, "system", cpu=12.5),
    metrics(5, "system", cpu=99.0),  # sampled by the clock while the step stood still: MLflow keeps the first
    metrics(1, loss=0.5, accuracy=0.75, lr=None),  # None: a NaN as events.jsonl writes it
    metrics(10, "step", loss=0.4),
    metrics(2, loss=0.25, accuracy=0.875),
    metrics(2, "test", test_accuracy=0.8),
    SUMMARY,
    {"event": "closed", "status": "completed"},
]
SENT = {
    ("step/loss", 5): 0.9, ("system/cpu", 5): 12.5, ("loss", 1): 0.5, ("accuracy", 1): 0.75,
    ("step/loss", 10): 0.4, ("loss", 2): 0.25, ("accuracy", 2): 0.875, ("test_accuracy", 2): 0.8,
}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite MLflow store, made once per module."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # creates and migrates the tables
    return db


@pytest.fixture
def store(empty_store: Path, tmp_path: Path) -> str:
    """This test's own copy of the empty store, as a tracking URI."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(empty_store, db)
    return f"sqlite:///{db}"


def make_run(
    root: Path, events: Sequence[Mapping[str, Any]] = EVENTS, *, experiment: str | None = "exp",
    tracking_uri: str | None = None, environment: Mapping[str, Any] = ENVIRONMENT,
) -> Path:
    """A run directory as training leaves it, with these events."""
    run_dir = root / "runs" / RUN
    (run_dir / "logs").mkdir(parents=True)
    config = {"run": {"name": "tiny", "output_dir": str(root / "runs"), "experiment": experiment},
              "tracking": {"uri": tracking_uri}}
    (run_dir / "config.yaml").write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    (run_dir / "environment.json").write_text(json.dumps(environment), encoding="utf-8")
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed"}), encoding="utf-8")
    (run_dir / "logs" / "training_log.csv").write_text("epoch,loss\n1,0.5\n2,0.25\n", encoding="utf-8")
    write_events(run_dir, events)
    return run_dir


def write_events(run_dir: Path, events: Sequence[Mapping[str, Any]]) -> None:
    with (run_dir / "logs" / "events.jsonl").open("a", encoding="utf-8") as f:
        for event in events:
            f.write(json.dumps({"time": 1.0, **event}) + "\n")


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri)


def held_metrics(uri: str, run_id: str) -> dict[tuple[str, int], float]:
    """Every metric value MLflow holds for the run, {(key, step): value}; a duplicate fails."""
    c = client(uri)
    out: dict[tuple[str, int], float] = {}
    for key in c.get_run(run_id).data.metrics:
        for m in c.get_metric_history(run_id, key):
            assert (key, m.step) not in out, f"{key} at step {m.step} twice"
            out[(key, m.step)] = m.value
    return out


def artifacts(uri: str, run_id: str, path: str | None = None) -> list[str]:
    return sorted(a.path for a in client(uri).list_artifacts(run_id, path))


def link(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "logs" / "mlflow.json").read_text(encoding="utf-8"))
    return data


def outcome(run_dir: Path) -> dict[str, Any]:
    """logs/mlflow_finish.json without its time."""
    data: dict[str, Any] = json.loads((run_dir / "logs" / finisher.OUTCOME_FILE).read_text(encoding="utf-8"))
    assert isinstance(data.pop("time"), float)
    return data


def assert_lock_free(run_dir: Path) -> None:
    lock = finisher.try_lock(run_dir / "logs")
    assert lock is not None, "sync kept the finisher lock"
    lock.release()


def test_first_sync_sends_every_param_metric_tag_and_file(tmp_path: Path, store: str) -> None:
    run_dir = make_run(tmp_path)
    report = sync.sync_run(run_dir, uri=store)
    run_id = link(run_dir)["run_id"]
    assert report == sync.SyncReport(run_id=run_id, tracking_uri=store, metrics_sent=8, model_logged=False)
    assert held_metrics(store, run_id) == SENT
    run = client(store).get_run(run_id)
    assert run.data.params == {"lr": "0.01", "hidden": "[16]"}
    assert run.info.status == "FINISHED" and run.info.run_name == RUN
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("kiln.")}
    assert tags == {
        "kiln.version": "9.9.9", "kiln.config_hash": "c0ffee", "kiln.host": "box",
        "kiln.data_fingerprint": "unknown",  # environment.json without one
        "kiln.run_dir": str(run_dir.resolve()), "kiln.git_commit": "abc123", "kiln.git_dirty": "true",
        "kiln.status": "completed",
    }
    assert (run.data.tags["mlflow.user"], run.data.tags["mlflow.source.name"]) == ("ada", "kiln train")
    experiment = client(store).get_experiment(run.info.experiment_id)
    mlartifacts = (Path(store.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    assert (experiment.name, experiment.artifact_location) == ("exp", f"{mlartifacts}/exp")
    assert artifacts(store, run_id) == ["config.yaml", "environment.json", "summary.json", "training_log.csv"]
    assert outcome(run_dir) == {"ok": True, "run_id": run_id}
    assert_lock_free(run_dir)


def test_second_sync_sends_only_what_is_new(tmp_path: Path, store: str) -> None:
    run_dir = make_run(tmp_path, EVENTS[:-2])  # the run ended before its summary reached the file
    first = sync.sync_run(run_dir, uri=store)
    assert first.metrics_sent == 8
    run = client(store).get_run(first.run_id)
    assert run.info.status == "KILLED" and "kiln.status" not in run.data.tags  # no summary: interrupted
    again = sync.sync_run(run_dir, uri=store)
    assert again == first.__class__(first.run_id, store, 0, False)
    write_events(run_dir, [metrics(2, loss=99.0), metrics(3, loss=0.125), SUMMARY])
    last = sync.sync_run(run_dir, uri=store)
    assert (last.run_id, last.metrics_sent) == (first.run_id, 1)
    assert held_metrics(store, first.run_id) == {**SENT, ("loss", 3): 0.125}  # step 2 kept its value
    run = client(store).get_run(first.run_id)
    assert (run.info.status, run.data.tags["kiln.status"]) == ("FINISHED", "completed")


@pytest.mark.parametrize(("status", "mlflow_status"), [("failed", "FAILED"), ("stopped_early", "FINISHED")])
def test_the_summary_status_ends_the_run(tmp_path: Path, store: str, status: str, mlflow_status: str) -> None:
    run_dir = make_run(tmp_path, [metrics(1, loss=0.5), {"event": "summary", "status": status}])
    report = sync.sync_run(run_dir, uri=store)
    run = client(store).get_run(report.run_id)
    assert (run.info.status, run.data.tags["kiln.status"]) == (mlflow_status, status)


def test_metric_records_go_in_batches_of_sync_batch_flushed_at_every_other_record(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    send = MlflowTracker.log_metric_records

    def spy(self: MlflowTracker, records: Sequence[Any]) -> None:
        sizes.append(len(records))
        send(self, records)

    assert sync.SYNC_BATCH == 1000
    monkeypatch.setattr(sync, "SYNC_BATCH", 3)
    monkeypatch.setattr(MlflowTracker, "log_metric_records", spy)
    events = [PARAMS, *(metrics(i, loss=i / 8) for i in range(1, 8)),
              {"event": "params", "params": {"seed": 7}}, metrics(8, loss=1.0), SUMMARY]
    report = sync.sync_run(make_run(tmp_path, events), uri=store)
    assert sizes == [0, 3, 3, 1, 1, 0]
    assert held_metrics(store, report.run_id) == {("loss", i): i / 8 for i in range(1, 9)}
    assert client(store).get_run(report.run_id).data.params == {"lr": "0.01", "hidden": "[16]", "seed": "7"}
    assert report.metrics_sent == 8


def test_without_uri_sync_follows_the_runs_link(tmp_path: Path, store: str) -> None:
    run_dir = make_run(tmp_path, EVENTS[:-2])
    first = sync.sync_run(run_dir, uri=store)
    write_events(run_dir, [metrics(3, loss=0.125)])
    again = sync.sync_run(run_dir)
    assert (again.run_id, again.tracking_uri, again.metrics_sent) == (first.run_id, store, 1)


def test_without_uri_or_link_sync_uses_the_configs_store(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured = make_run(tmp_path / "a", experiment=None, tracking_uri=store)
    report = sync.sync_run(configured)
    assert (report.tracking_uri, report.metrics_sent) == (store, 8)
    # no experiment in the config: the run's name is the experiment
    assert client(store).get_experiment(client(store).get_run(report.run_id).info.experiment_id).name == "tiny"

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = make_run(tmp_path / "b")
    shutil.copyfile(store.removeprefix("sqlite:///"), tmp_path / "b" / "runs" / "mlflow.db")
    report = sync.sync_run(default)
    assert report.tracking_uri == f"sqlite:///{(tmp_path / 'b' / 'runs' / 'mlflow.db').resolve()}"
    assert held_metrics(report.tracking_uri, report.run_id) == SENT


@pytest.mark.parametrize("missing", ["config.yaml", "logs/events.jsonl"])
def test_a_directory_that_is_not_a_run_is_refused(tmp_path: Path, missing: str) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / missing).unlink()
    with pytest.raises(KilnError) as info:
        sync.sync_run(run_dir, uri="sqlite:///never.db")
    assert str(info.value) == f"{run_dir} is not a kiln run directory (no config.yaml or logs/events.jsonl)"
    assert not (run_dir / "logs" / "mlflow.json").exists()


def test_a_malformed_or_dead_uri_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    with pytest.raises(TrackingError, match=r"^tracking.uri 'localhost:5000' is not a tracking URI: "):
        sync.sync_run(run_dir, uri="localhost:5000")
    with socket_closed() as uri, pytest.raises(TrackingError, match=rf"^MLflow tracking server {uri} did not answer"):
        sync.sync_run(run_dir, uri=uri)
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == ["events.jsonl", "training_log.csv"]


@contextlib.contextmanager
def socket_closed() -> Iterator[str]:
    """An http:// URI on a loopback port that nothing listens on (bound, never listening)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_failure_mid_replay_is_recorded_and_lets_go_of_the_lock(tmp_path: Path, store: str) -> None:
    run_dir = make_run(tmp_path, [PARAMS, {"event": "metrics", "step": 1, "metrics": {"loss": 0.5}}])
    with pytest.raises(KeyError, match="scope"):
        sync.sync_run(run_dir, uri=store)
    assert outcome(run_dir) == {"ok": False, "error": f"{store}: KeyError: 'scope'"}
    assert_lock_free(run_dir)
    run = client(store).get_run(link(run_dir)["run_id"])
    assert (run.info.status, run.data.params) == ("RUNNING", {"lr": "0.01", "hidden": "[16]"})


def test_data_fingerprint_from_environment_is_kept(tmp_path: Path, store: str) -> None:
    run_dir = make_run(tmp_path, environment={**ENVIRONMENT, "data_fingerprint": "f00d"})
    report = sync.sync_run(run_dir, uri=store)
    assert client(store).get_run(report.run_id).data.tags["kiln.data_fingerprint"] == "f00d"


def test_a_finisher_still_at_work_is_taken_over_after_wait(tmp_path: Path, store: str) -> None:
    """A process holding the run's finisher lock (as a detached MLflow finisher does) is stopped
    once ``wait`` has passed: at once for ``wait=0``. Sync runs on a thread so that the holder can
    be watched meanwhile; the 30 s bound is no speed target but sits halfway to the 60 s a sync
    that ignored ``wait`` (the default patience) would take before stopping the holder."""
    run_dir = make_run(tmp_path)
    lock_path = run_dir / "logs" / finisher.LOCK_FILE
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys\n"
         f"f = open({str(lock_path)!r}, 'a+')\n"
         "fcntl.flock(f, fcntl.LOCK_EX)\n"
         "f.write(str(os.getpid())); f.flush()\n"
         "sys.stdin.read()\n"],  # holds the lock until stopped (or its stdin closes)
        stdin=subprocess.PIPE,
    )
    try:
        while finisher.holder(run_dir / "logs") != holder.pid:  # poll until it holds the lock
            assert holder.poll() is None, "the lock holder died"
            time.sleep(0.01)
        with ThreadPoolExecutor(1) as pool:
            report = pool.submit(sync.sync_run, run_dir, store, 0.0)
            try:
                assert holder.wait(timeout=30) == -signal.SIGTERM
            finally:
                if holder.poll() is None:  # a failed check: let the sync go on and end
                    os.kill(holder.pid, signal.SIGKILL)
                    holder.wait()
            assert report.result().metrics_sent == 8
    finally:
        assert holder.stdin is not None
        holder.stdin.close()


def test_a_model_is_logged_once_and_a_complete_one_is_left_alone(tmp_path: Path, store: str) -> None:
    from kiln.config import parse_model_config
    from kiln.data.spec import DataSpec
    from kiln.models.build import build_model
    from kiln.models.package import save_model_package

    run_dir = make_run(tmp_path)
    spec = DataSpec("digits", "classification", (4,), 3, ("a", "b", "c"))
    model_cfg = parse_model_config({"name": "mlp", "hidden": [2]})
    save_model_package(run_dir / "models", build_model(model_cfg, spec), model_cfg, spec, {})
    report = sync.sync_run(run_dir, uri=store)
    assert (report.model_logged, report.metrics_sent) == (True, 8)
    run = client(store).get_run(report.run_id)
    assert run.data.tags[MODEL_TAG] == f"runs:/{report.run_id}/model"
    assert artifacts(store, report.run_id, "kiln_model") == ["kiln_model/model.json", "kiln_model/model.safetensors"]
    mlmodel, example = (
        Path(client(store).download_artifacts(report.run_id, f"model/{name}", str(tmp_path / "dl")))
        .read_text(encoding="utf-8") for name in ("MLmodel", "input_example.json")
    )
    assert '{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}' in mlmodel, mlmodel
    assert json.loads(example) == [[0.0] * 4] * 2  # two rows of zeros: the batch dimension stays dynamic

    again = sync.sync_run(run_dir, uri=store)
    assert (again.model_logged, again.metrics_sent) == (False, 0)


def test_a_model_mlflow_holds_complete_is_not_read_again(tmp_path: Path, store: str) -> None:
    run_dir = make_run(tmp_path)
    first = sync.sync_run(run_dir, uri=store)  # no models/: nothing to log
    assert first.model_logged is False
    client(store).set_tag(first.run_id, MODEL_TAG, "runs:/elsewhere/model")
    (run_dir / "models").mkdir()
    (run_dir / "models" / "model.json").write_text("not json: reading it would fail", encoding="utf-8")
    assert sync.sync_run(run_dir, uri=store).model_logged is False
    assert artifacts(store, first.run_id) == ["config.yaml", "environment.json", "summary.json", "training_log.csv"]
