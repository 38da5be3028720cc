"""What a plain MLflow user gets from kiln, against a real ``mlflow server``: a model that takes any
batch from every path that logs one (training, ``kiln sync``, ``kiln registry register``), the
dataset and source in the UI's columns, a run that does not wait for MLflow at its end, and a
dead server that costs a run one line of output instead of a minute and a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import run_cli
from tests.tracking.conftest import MlflowServer, free_port
from tests.tracking.plain_mlflow import assert_plain_mlflow_predicts_any_batch

from kiln.cli.main import main
from kiln.tracking import read_events
from kiln.tracking.finisher import holder, wait_for_finisher

TRAIN = ("train", "run.progress=false", "model.hidden=[16]", "training.batch_size=32", "--quiet")


def _link(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "logs" / "mlflow.json").read_text())
    return data


def _only_run(output: Path) -> Path:
    (run_dir,) = [p for p in output.iterdir() if p.is_dir() and (p / "config.yaml").is_file()]
    return run_dir


def test_unreachable_server_costs_one_line_and_no_traceback(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens here: connections are refused
    result = run_cli(*TRAIN, "training.epochs=2", f"run.output_dir={tmp_path}", f"tracking.uri={uri}",
                     "tracking.backends=[jsonl,mlflow]")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    reports = [line for line in result.stderr.splitlines() if "mlflow" in line.lower()]
    assert len(reports) == 1, result.stderr  # reported once, in one line
    assert uri in reports[0] and "ConnectionRefusedError" in reports[0], reports[0]
    run_dir = _only_run(tmp_path)
    records = read_events(run_dir / "logs" / "events.jsonl")
    failed = [r for r in records if r["event"] == "tracker_failed"]
    assert [r["tracker"] for r in failed] == ["mlflow"] and uri in failed[0]["error"]
    # The end of the run did not wait for the dead server (MLflow's own retries took 70 s).
    end = {r["event"]: r["time"] for r in records}
    assert end["closed"] - end["summary"] < 10, end
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert holder(run_dir / "logs") is None and not (run_dir / "logs" / "mlflow.json").exists()


@pytest.mark.slow
def test_every_path_that_logs_a_model_gives_one_that_takes_any_batch(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """Training and ``kiln registry register`` here; ``kiln sync`` after an outage is checked the
    same way in test_mlflow.py's outage test, which already has a run whose server went away.
    ``kiln registry register`` runs through the CLI's own main() in this process: the race it is
    about is with the finisher, another process either way; a second interpreter importing MLflow
    twice proved nothing more, and starting sooner it meets the finisher at work more often."""
    common = (f"tracking.uri={mlflow_server.uri}", "run.experiment=interop", "tracking.system_metrics=false")
    # 1. training: the model is logged by the run's finisher after the prompt is back, and
    # 2. kiln registry register right after kiln train, with the finisher still at work
    trained = run_cli(*TRAIN, "training.epochs=2", f"run.output_dir={tmp_path / 'trained'}", *common,
                      "tracking.backends=[jsonl,mlflow]")
    assert trained.returncode == 0, trained.stderr
    trained_dir = _only_run(tmp_path / "trained")
    pending = holder(trained_dir / "logs")
    assert main(["registry", "register", str(trained_dir), "--name", "interop-registered"]) == 0
    # 3. kiln registry register of a run whose model never reached MLflow: it logs it itself
    unlogged = run_cli(*TRAIN, "training.epochs=1", f"run.output_dir={tmp_path / 'unlogged'}", *common,
                       "tracking.log_model=false", "tracking.backends=[jsonl,mlflow]")
    assert unlogged.returncode == 0, unlogged.stderr
    unlogged_dir = _only_run(tmp_path / "unlogged")
    assert wait_for_finisher(unlogged_dir)
    assert main(["registry", "register", str(unlogged_dir), "--name", "interop-unlogged"]) == 0

    assert wait_for_finisher(trained_dir)
    models = {
        "trained": f"runs:/{_link(trained_dir)['run_id']}/model",
        "registered": "models:/interop-registered/1",
        "unlogged": "models:/interop-unlogged/1",
    }
    runs = {"trained": trained_dir, "registered": trained_dir, "unlogged": unlogged_dir}
    assert_plain_mlflow_predicts_any_batch(mlflow_server.uri, models, runs, tmp_path)
    # Say whether the register test saw the race it is about (it passes either way, but it
    # must have been run with the finisher pending on a machine like CI's at least sometimes).
    print(f"finisher pending when register ran: {pending is not None}")


def test_ui_columns_dataset_source_and_training_view(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    experiment = f"interop-ui-{free_port()}"  # new: kiln creates it
    result = run_cli(*TRAIN, "training.epochs=1", f"run.output_dir={tmp_path}", f"run.experiment={experiment}",
                     f"tracking.uri={mlflow_server.uri}", "tracking.backends=[jsonl,mlflow]",
                     "tracking.system_metrics=false")
    assert result.returncode == 0, result.stderr
    run_dir = _only_run(tmp_path)
    assert wait_for_finisher(run_dir)
    environment = json.loads((run_dir / "environment.json").read_text())
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(_link(run_dir)["run_id"])
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert (dataset.name, dataset.digest) == ("digits", environment["data_fingerprint"])
    assert dataset.source_type == "kiln" and "digits" in dataset.source
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "train"}
    tags = run.data.tags
    assert tags["mlflow.source.git.commit"] == environment["git"]["commit"]
    assert tags["mlflow.user"] == environment["user"]
    assert tags["mlflow.source.name"].startswith("kiln train ")
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.status == "FINISHED"
