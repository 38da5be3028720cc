"""MLflow tracking against real stores: the embedded SQLite file and a real ``mlflow server``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import run_cli
from tests.tracking.conftest import MlflowServer, free_port

import kiln
from kiln.testing import tiny_config
from kiln.tracking import read_events
from kiln.train import Trainer


def client_for(run_dir: Path) -> tuple[object, str]:
    from mlflow import MlflowClient

    link = json.loads((run_dir / "logs/mlflow.json").read_text())
    return MlflowClient(link["tracking_uri"]), link["run_id"]


def epoch_metrics(run_dir: Path) -> dict[tuple[str, int], float]:
    """Every metric value of events.jsonl, as MLflow names it: {(key, step): value}."""
    prefix = {"epoch": "", "test": "", "step": "step/", "system": "system/"}
    out = {}
    for record in read_events(run_dir / "logs/events.jsonl"):
        if record["event"] == "metrics":
            for key, value in record["metrics"].items():
                if value is not None:
                    out[(prefix[record["scope"]] + key, record["step"])] = value
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
    return Trainer(cfg, quiet=True).fit()


def test_embedded_store_holds_params_metrics_tags_and_artifacts(sqlite_run: kiln.FitResult) -> None:
    run_dir = sqlite_run.run_dir
    assert (run_dir.parent / "mlflow.db").is_file()  # the embedded default: no server
    client, run_id = client_for(run_dir)
    run = client.get_run(run_id)  # type: ignore[attr-defined]
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert client.get_experiment(run.info.experiment_id).name == "kiln-tests"  # type: ignore[attr-defined]
    assert run.data.params["training.lr"] == "0.01" and run.data.params["model.hidden"] == "[16]"
    tags = run.data.tags
    assert tags["kiln.config_hash"] == sqlite_run.summary["config_hash"]
    assert tags["kiln.git_commit"] and tags["kiln.version"] == kiln.__version__ and tags["kiln.data_fingerprint"]
    assert mlflow_metrics(client, run_id) == epoch_metrics(run_dir)
    history = client.get_metric_history(run_id, "val_loss")  # type: ignore[attr-defined]
    assert len(history) == 3
    artifacts = {a.path for a in client.list_artifacts(run_id)}  # type: ignore[attr-defined]
    assert {"config.yaml", "summary.json", "environment.json", "training_log.csv", "model", "kiln_model"} <= artifacts


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
    client, run_id = client_for(first.run_dir)
    plan = plan_resume(first.run_dir, ["training.epochs=4"])
    assert plan.checkpoint is not None
    Trainer(plan.config, quiet=True, resume_from=plan.checkpoint, run_dir=first.run_dir).fit()
    _, same_run = client_for(first.run_dir)
    assert same_run == run_id
    metrics = mlflow_metrics(client, run_id)  # asserts there are no duplicates
    assert sorted(step for key, step in metrics if key == "val_loss") == [21, 42, 63, 84]
    assert client.get_run(run_id).data.tags["kiln.changed.training.epochs"] == "4"  # type: ignore[attr-defined]


def test_unreachable_server_at_start_still_trains_to_completion(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    started = time.monotonic()
    result = run_cli("train", "run.progress=false", "model.hidden=[16]", "training.epochs=2",
                     f"run.output_dir={tmp_path}", f"tracking.uri={uri}", "tracking.close_timeout=3",
                     "tracking.backends=[jsonl,mlflow]", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "test_accuracy" in result.stdout
    assert "not sent" in result.stderr or "failed" in result.stderr
    assert time.monotonic() - started < 120
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_server_outage_mid_run_then_sync_restores_exactly_the_events(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "outage")
    server.root.mkdir()
    server.start()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "kiln", "train", "run.progress=false", "model.hidden=[16]",
             "training.epochs=12", "training.batch_size=16", f"run.output_dir={tmp_path / 'runs'}",
             f"tracking.uri={server.uri}", "tracking.close_timeout=5", "tracking.log_every_n_steps=20",
             "tracking.backends=[jsonl,csv,mlflow]", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 120
        while not list((tmp_path / "runs").glob("*/logs/mlflow.json")) or not _epochs_logged(tmp_path / "runs", 2):
            assert process.poll() is None and time.monotonic() < deadline, "training did not get going"
            time.sleep(0.1)
        server.stop()  # the outage, mid-run
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"

        server.start()  # back again: sync fills the gap
        first = run_cli("sync", str(run_dir))
        assert first.returncode == 0, first.stderr
        client, run_id = client_for(run_dir)
        assert mlflow_metrics(client, run_id) == epoch_metrics(run_dir)
        second = run_cli("sync", str(run_dir))
        assert second.returncode == 0 and ": 0 metric values sent" in second.stdout
        assert mlflow_metrics(client, run_id) == epoch_metrics(run_dir)
    finally:
        server.stop()


def _epochs_logged(runs: Path, n: int) -> bool:
    for events in runs.glob("*/logs/events.jsonl"):
        records = [r for r in read_events(events) if r["event"] == "metrics" and r["scope"] == "epoch"]
        return len(records) >= n
    return False


def test_runs_from_two_processes_log_into_one_server(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = run_cli("train", "run.progress=false", "model.hidden=[16]", "training.epochs=1",
                         f"run.name=team_{name}", "run.experiment=team", f"run.output_dir={tmp_path}",
                         f"tracking.uri={mlflow_server.uri}", "tracking.backends=[jsonl,mlflow]", "--quiet")
        assert result.returncode == 0, result.stderr
        assert "tracking:" not in result.stderr, result.stderr  # no tracker failed or timed out
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
