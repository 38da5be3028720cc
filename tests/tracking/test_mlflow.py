"""MLflow tracking against real stores: the embedded SQLite file and a real ``mlflow server``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from tests.conftest import run_cli
from tests.tracking.conftest import (
    DroppingProxy,
    MlflowServer,
    OutageProxy,
    StalledServer,
    free_port,
    live_workers,
)
from tests.tracking.plain_mlflow import assert_plain_mlflow_predicts_any_batch
from typing_extensions import override

import kiln
from kiln.cli.main import main
from kiln.config.loader import load_config
from kiln.data.build import build_data
from kiln.tasks import build_task
from kiln.testing import tiny_config
from kiln.tracking import read_events
from kiln.tracking.finisher import wait_for_finisher
from kiln.train import Callback, Trainer
from kiln.train.state import TrainState

SAFETY = 120.0  # only keeps a wrong answer from hanging the suite; a right one never comes near it


def client_for(run_dir: Path) -> tuple[object, str]:
    from mlflow import MlflowClient

    link = json.loads((run_dir / "logs/mlflow.json").read_text())
    return MlflowClient(link["tracking_uri"]), link["run_id"]


def epoch_metrics(run_dir: Path) -> dict[tuple[str, int], float]:
    """Every metric value of events.jsonl, as MLflow names it: {(key, step): value}.

    Where a key has two values at one step, the first: kiln's MLflow tracker sends a (key, step)
    once. A slow run gets that for system metrics, sampled by the clock while the step stands still.
    """
    prefix = {"epoch": "", "test": "", "step": "step/", "system": "system/"}
    out = {}
    for record in read_events(run_dir / "logs/events.jsonl"):
        if record["event"] == "metrics":
            for key, value in record["metrics"].items():
                if value is not None:
                    out.setdefault((prefix[record["scope"]] + key, record["step"]), value)
    return out


def mlflow_metrics(client: object, run_id: str) -> dict[tuple[str, int], float]:
    run = client.get_run(run_id)  # type: ignore[attr-defined]
    out = {}
    for key in run.data.metrics:
        for metric in client.get_metric_history(run_id, key):  # type: ignore[attr-defined]
            assert (key, metric.step) not in out, f"duplicate {key} at step {metric.step}"
            out[(key, metric.step)] = metric.value
    return out


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory) -> kiln.FitResult:
    cfg = tiny_config(tmp_path_factory.mktemp("sqlite"), "training.epochs=3", "tracking.log_every_n_steps=10",
                      "run.experiment=kiln-tests", backends=("jsonl", "csv", "mlflow"))
    result = Trainer(cfg, quiet=True).fit()
    assert wait_for_finisher(result.run_dir, SAFETY)  # MLflow finishes after fit() returns
    return result


def test_embedded_store_holds_params_metrics_tags_and_artifacts(sqlite_run: kiln.FitResult) -> None:
    run_dir = sqlite_run.run_dir
    assert (run_dir.parent / "mlflow.db").is_file()  # the embedded default: no server
    client, run_id = client_for(run_dir)
    run = client.get_run(run_id)  # type: ignore[attr-defined]
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert client.get_experiment(run.info.experiment_id).name == "kiln-tests"  # type: ignore[attr-defined]
    assert run.data.params["training.lr"] == "0.01" and run.data.params["model.hidden"] == "[16]"
    tags = run.data.tags
    assert tags["kiln.config_hash"] == sqlite_run.summary.config_hash
    assert tags["kiln.git_commit"] and tags["kiln.version"] == kiln.__version__ and tags["kiln.data_fingerprint"]
    assert mlflow_metrics(client, run_id) == epoch_metrics(run_dir)
    history = client.get_metric_history(run_id, "val_loss")  # type: ignore[attr-defined]
    assert len(history) == 3
    artifacts = {a.path for a in client.list_artifacts(run_id)}  # type: ignore[attr-defined]
    assert {"config.yaml", "summary.json", "environment.json", "training_log.csv", "model", "kiln_model"} <= artifacts


def test_tags_name_the_host_and_the_git_state_that_environment_json_records(sqlite_run: kiln.FitResult) -> None:
    client, run_id = client_for(sqlite_run.run_dir)
    tags = client.get_run(run_id).data.tags  # type: ignore[attr-defined]
    environment = json.loads((sqlite_run.run_dir / "environment.json").read_text())
    assert tags["kiln.host"] == socket.gethostname() == environment["hostname"]
    git = environment["git"]
    assert git, "the tests run in a git checkout: environment.json must say which commit"
    assert tags["kiln.git_commit"] == tags["mlflow.source.git.commit"] == git["commit"]
    assert tags["kiln.git_dirty"] == {True: "true", False: "false"}[git["dirty"]]


def test_logged_model_has_the_exact_signature_and_two_real_test_samples_as_input_example(
    sqlite_run: kiln.FitResult, tmp_path: Path
) -> None:
    import mlflow

    client, run_id = client_for(sqlite_run.run_dir)
    mlflow.set_tracking_uri(client.tracking_uri)  # type: ignore[attr-defined]
    try:
        info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
        local = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=str(tmp_path))
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    tensor = [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1, 8, 8]}}]
    assert json.loads(info.signature.to_dict()["inputs"]) == tensor
    assert json.loads(info.signature.to_dict()["outputs"]) == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 10]}}
    ]
    example = mlflow.models.Model.load(local).load_input_example(local)
    cfg = load_config(sqlite_run.run_dir / "config.yaml", [])
    data = build_data(cfg.data, cfg.run.seed)
    task = build_task(data.spec, cfg.training.loss)
    expected = np.stack([task.split_batch(data.test[i])[0].numpy() for i in range(2)])
    assert isinstance(example, np.ndarray) and example.dtype == np.float32
    np.testing.assert_array_equal(example, expected)  # the first two test samples, exactly


def test_plain_mlflow_client_loads_the_model_without_kiln(sqlite_run: kiln.FitResult, tmp_path: Path) -> None:
    client, run_id = client_for(sqlite_run.run_dir)
    inputs = np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import mlflow
        mlflow.set_tracking_uri({client.tracking_uri!r})
        model = mlflow.pyfunc.load_model("runs:/{run_id}/model")
        out = model.predict(np.load({str(tmp_path / 'inputs.npy')!r}))
        assert not any(name == "kiln" or name.startswith("kiln.") for name in sys.modules)
        print(json.dumps(np.asarray(out).tolist()))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={"MLFLOW_DISABLE_TELEMETRY": "true", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    predicted = np.array(json.loads(result.stdout.strip().splitlines()[-1]), dtype=np.float32)
    with torch.no_grad():
        expected = kiln.load_model(sqlite_run.run_dir)(torch.from_numpy(inputs)).numpy()
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)


def test_resumed_run_appends_to_the_same_mlflow_run(tmp_path: Path) -> None:
    from kiln.train.resume import plan_resume

    cfg = tiny_config(tmp_path, "training.epochs=2", backends=("jsonl", "mlflow"))
    first = Trainer(cfg, quiet=True).fit()
    assert wait_for_finisher(first.run_dir, SAFETY)
    client, run_id = client_for(first.run_dir)
    plan = plan_resume(first.run_dir, ["training.epochs=4"])
    assert plan.checkpoint is not None
    kiln.resume(first.run_dir, ["training.epochs=4"], quiet=True)
    assert wait_for_finisher(first.run_dir, SAFETY)
    _, same_run = client_for(first.run_dir)
    assert same_run == run_id
    metrics = mlflow_metrics(client, run_id)  # asserts there are no duplicates
    assert sorted(step for key, step in metrics if key == "val_loss") == [21, 42, 63, 84]
    assert client.get_run(run_id).data.tags["kiln.changed.training.epochs"] == "4"  # type: ignore[attr-defined]


def _processes_marked(mark: str) -> list[int]:
    """Pids of live processes whose environment carries ``KILN_TEST_MARK=mark`` (a run's CLI
    process and every child it started: a tracker worker left behind would be one)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("KILN_TEST_MARK") == mark and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _tracker_failures(run_dir: Path) -> list[tuple[str, str]]:
    return [(r["tracker"], r["error"]) for r in read_events(run_dir / "logs/events.jsonl")
            if r["event"] == "tracker_failed"]


def test_unreachable_server_is_reported_once_and_the_run_completes_without_it(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    mark = uuid.uuid4().hex
    result = run_cli("train", "run.progress=false", "model.hidden=[16]", "training.epochs=2",
                     f"run.output_dir={tmp_path}", f"tracking.uri={uri}", "tracking.close_timeout=3",
                     "tracking.backends=[jsonl,mlflow]", "--quiet", env={"KILN_TEST_MARK": mark})
    assert result.returncode == 0, result.stderr
    assert "test_accuracy" in result.stdout
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    ((tracker, error),) = _tracker_failures(run_dir)  # exactly one failure, of MLflow
    assert tracker == "mlflow" and error.startswith("TrackingError: ")
    reports = [line for line in result.stderr.splitlines() if "tracking:" in line]
    assert reports == [f"kiln: tracking: tracker 'mlflow' failed and is disabled for this run: "
                       f"{error.removeprefix('TrackingError: ')}"]
    records = read_events(run_dir / "logs/events.jsonl")
    assert [r["scope"] for r in records if r["event"] == "metrics" and r["scope"] != "system"] == [
        "epoch", "epoch", "test"]
    assert records[-1]["event"] == "closed"
    assert _processes_marked(mark) == []  # no MLflow worker outlives the run


class HoldUntilReached(Callback):
    """At the end of the first epoch, wait until the stalled server holds a request from the MLflow
    tracker: the remaining epochs then train while the tracker waits on a server that answers
    nothing."""

    def __init__(self, server: StalledServer) -> None:
        self.server = server

    @override
    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch == 0:
            assert self.server.reached.wait(SAFETY), "the MLflow tracker never reached the server"


def test_a_server_that_never_answers_costs_the_run_nothing_but_mlflow(
    stalled_server: StalledServer, tmp_path: Path
) -> None:
    workers = live_workers()
    cfg = tiny_config(tmp_path, "training.epochs=3", f"tracking.uri={stalled_server.uri}",
                      "tracking.close_timeout=1", backends=("jsonl", "csv", "mlflow"))
    result = Trainer(cfg, quiet=True, callbacks=[HoldUntilReached(stalled_server)]).fit()
    answered_during_the_run = stalled_server.answered
    stalled_server.release()

    assert answered_during_the_run == 0  # the whole run went by without one answer from it
    assert stalled_server.requests  # and the tracker did try it
    assert result.status == "completed"
    records = read_events(result.run_dir / "logs/events.jsonl")
    assert len([r for r in records if r["event"] == "metrics" and r["scope"] == "epoch"]) == 3
    assert [tracker for tracker, _ in _tracker_failures(result.run_dir)] == ["mlflow"]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    csv_rows = (result.run_dir / "logs/training_log.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 3  # the other trackers got everything
    assert (records[-1]["event"], records[-1]["status"]) == ("closed", "completed")
    assert live_workers() == workers  # no MLflow worker left behind, waiting on the server


class OutageOnceLive(Callback):
    """After the second epoch, wait until the run's MLflow run holds an epoch metric (its worker is
    live), then cut the server off: the remaining epochs train through the outage."""

    def __init__(self, proxy: OutageProxy, runs: Path) -> None:
        self.proxy, self.runs = proxy, runs

    @override
    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch != 1:
            return
        deadline = time.monotonic() + SAFETY
        while not self._live():
            assert time.monotonic() < deadline, "the MLflow worker never logged an epoch"
            time.sleep(0.1)
        self.proxy.cut()  # the outage, mid-run

    def _live(self) -> bool:
        links = list(self.runs.glob("*/logs/mlflow.json"))
        if not links:
            return False
        client, run_id = client_for(links[0].parent.parent)
        return bool(client.get_run(run_id).data.metrics)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_server_outage_mid_run_then_sync_restores_exactly_the_events(
    mlflow_server: MlflowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The run's tracking server is the shared one behind a proxy that the outage cuts and the
    # recovery restores on the same address: to the run, a server gone and back (refused
    # connections, then answers), without two more `mlflow server` start-ups.
    proxy = OutageProxy(mlflow_server.port)
    try:
        # The server dies mid-run, so the worker must be live from the start (no start delay).
        cfg = tiny_config(tmp_path / "runs", "training.epochs=12", f"tracking.uri={proxy.uri}",
                          "tracking.close_timeout=5", "tracking.log_every_n_steps=20",
                          "tracking.mlflow_start_delay=0", backends=("jsonl", "csv", "mlflow"))
        result = Trainer(cfg, quiet=True, callbacks=[OutageOnceLive(proxy, tmp_path / "runs")]).fit()
        assert result.status == "completed"
        run_dir = result.run_dir
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
        assert wait_for_finisher(run_dir), "the MLflow finisher did not give up on the dead server"

        proxy.restore()  # back again: sync fills the gap
        first = run_cli("sync", str(run_dir))  # the real-process kiln sync of the suite
        assert first.returncode == 0, first.stderr
        assert "model logged" in first.stdout, first.stdout  # the run's end never reached MLflow
        client, run_id = client_for(run_dir)
        assert mlflow_metrics(client, run_id) == epoch_metrics(run_dir)
        capsys.readouterr()
        assert main(["sync", str(run_dir)]) == 0  # the CLI's main() in this process
        assert ": 0 metric values sent" in capsys.readouterr().out
        assert mlflow_metrics(client, run_id) == epoch_metrics(run_dir)
        # the model kiln sync logged takes any batch in a plain MLflow client (issue 17)
        assert_plain_mlflow_predicts_any_batch(proxy.uri, {"synced": f"runs:/{run_id}/model"},
                                               {"synced": run_dir}, tmp_path)
    finally:
        proxy.cut()


def _epochs_logged(runs: Path, n: int) -> bool:
    for events in runs.glob("*/logs/events.jsonl"):
        records = [r for r in read_events(events) if r["event"] == "metrics" and r["scope"] == "epoch"]
        return len(records) >= n
    return False


def test_the_mlflow_worker_rides_over_a_dropped_connection(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no retries, one connection closed under a request failed the whole finisher and left
    its MLflow run RUNNING (CI, on a busy machine). The worker's settings retry it."""
    from mlflow import MlflowClient

    from kiln.tracking.mlflow import WORKER_ENV, MlflowTracker

    for key, value in WORKER_ENV.items():
        monkeypatch.setenv(key, value)  # as the worker process has them
    logs_dir = tmp_path / "run" / "logs"
    logs_dir.mkdir(parents=True)
    with DroppingProxy(mlflow_server.port, drop=2) as proxy:
        tracker = MlflowTracker(proxy.uri, "dropped", "dropped_run", logs_dir, {})
        tracker.log_metrics({"val_loss": 0.5}, 0, "epoch")
        tracker.close("completed")
    assert proxy.dropped == 2
    run = MlflowClient(mlflow_server.uri).get_run(tracker.run_id)
    assert (run.info.status, run.data.metrics) == ("FINISHED", {"val_loss": 0.5})
    assert json.loads((logs_dir / "mlflow_finish.json").read_text())["ok"] is True


def test_runs_from_two_processes_log_into_one_server(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = run_cli("train", "run.progress=false", "model.hidden=[16]", "training.epochs=1",
                         f"run.name=team_{name}", "run.experiment=team", f"run.output_dir={tmp_path}",
                         f"tracking.uri={mlflow_server.uri}", "tracking.backends=[jsonl,mlflow]", "--quiet")
        assert result.returncode == 0, result.stderr
        assert "tracking:" not in result.stderr, result.stderr  # no tracker failed or timed out
    for run_dir in tmp_path.iterdir():
        assert wait_for_finisher(run_dir, SAFETY)
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("team")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name.split("_")[1] for r in runs) == ["a", "b"]
    for r in runs:
        assert r.info.status == "FINISHED", (r.info.run_name, r.info.status)
        assert "val_loss" in r.data.metrics, (r.info.run_name, sorted(r.data.metrics))


def test_sync_of_a_run_tracked_without_mlflow_sends_every_value_in_bounded_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiln.tracking import sync

    sizes: list[int] = []
    send = sync.MlflowTracker.log_metric_records
    monkeypatch.setattr(sync, "SYNC_BATCH", 3)
    monkeypatch.setattr(sync.MlflowTracker, "log_metric_records",
                        lambda self, records: (sizes.append(len(records)), send(self, records))[1])
    result = Trainer(tiny_config(tmp_path, "training.epochs=3", "tracking.log_every_n_steps=2",
                                 "tracking.system_metrics=false"), quiet=True).fit()
    uri = f"sqlite:///{tmp_path / 'synced.db'}"
    report = sync.sync_run(result.run_dir, uri=uri)
    client, run_id = client_for(result.run_dir)
    assert report.run_id == run_id and mlflow_metrics(client, run_id) == epoch_metrics(result.run_dir)
    assert report.metrics_sent == len(epoch_metrics(result.run_dir))
    assert max(sizes) == 3 and sum(sizes) == sum(
        1 for r in read_events(result.run_dir / "logs/events.jsonl") if r["event"] == "metrics")
