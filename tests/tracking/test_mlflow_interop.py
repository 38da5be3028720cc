"""What a plain MLflow user gets from kiln, against a real ``mlflow server``: a model that takes any
batch from every path that logs one (training, ``kiln sync``, ``kiln registry register``), the
dataset and source in the UI's columns, a run that does not wait for MLflow at its end, and a
dead server that costs a run one line of output instead of a minute and a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import run_cli
from tests.tracking.conftest import MlflowServer, free_port

import kiln
from kiln.tracking import read_events
from kiln.tracking.finisher import holder, wait_for_finisher

TRAIN = ("train", "run.progress=false", "model.hidden=[16]", "training.batch_size=32", "--quiet")


def _link(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "logs" / "mlflow.json").read_text())
    return data


def _only_run(output: Path) -> Path:
    (run_dir,) = [p for p in output.iterdir() if p.is_dir() and (p / "config.yaml").is_file()]
    return run_dir


def _predict_with_plain_mlflow(uri: str, models: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """In a process without kiln: load each model with mlflow.pyfunc and predict batches of 1 and 7,
    as a shaped array (n, 1, 8, 8) and in the flat form a tensor signature allows (a one-column
    DataFrame of flattened rows). Returns {name: {form: predictions}} or {name: error}."""
    inputs = np.random.default_rng(0).normal(size=(7, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, pandas as pd
        import mlflow
        mlflow.set_tracking_uri({uri!r})
        x = np.load({str(tmp_path / 'inputs.npy')!r})
        out = {{}}
        for name, model_uri in {models!r}.items():
            try:
                model = mlflow.pyfunc.load_model(model_uri)
                got = {{}}
                for n in (1, 7):
                    got[f"shaped{{n}}"] = np.asarray(model.predict(x[:n])).tolist()
                    flat = pd.DataFrame({{"x": [row.ravel().tolist() for row in x[:n]]}})
                    got[f"flat{{n}}"] = np.asarray(model.predict(flat)).tolist()
                out[name] = got
            except Exception as exc:
                out[name] = f"{{type(exc).__name__}}: {{exc}}"[:500]
        assert not any(m == "kiln" or m.startswith("kiln.") for m in sys.modules)
        print(json.dumps(out))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env={"MLFLOW_DISABLE_TELEMETRY": "true", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def _expected(run_dir: Path, n: int) -> np.ndarray:
    inputs = np.random.default_rng(0).normal(size=(7, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        out: np.ndarray = kiln.load_model(run_dir)(torch.from_numpy(inputs[:n])).numpy()
    return out


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
    common = (f"tracking.uri={mlflow_server.uri}", "run.experiment=interop", "tracking.system_metrics=false")
    # 1. training: the model is logged by the run's finisher after the prompt is back
    trained = run_cli(*TRAIN, "training.epochs=2", f"run.output_dir={tmp_path / 'trained'}", *common,
                      "tracking.backends=[jsonl,mlflow]")
    assert trained.returncode == 0, trained.stderr
    trained_dir = _only_run(tmp_path / "trained")
    # 2. kiln registry register right after kiln train, with the finisher still at work
    registered = run_cli(*TRAIN, "training.epochs=2", f"run.output_dir={tmp_path / 'registered'}", *common,
                         "tracking.backends=[jsonl,mlflow]")
    assert registered.returncode == 0, registered.stderr
    registered_dir = _only_run(tmp_path / "registered")
    pending = holder(registered_dir / "logs")
    result = run_cli("registry", "register", str(registered_dir), "--name", "interop-registered")
    assert result.returncode == 0, result.stderr
    # 3. kiln sync of a run whose server went away mid-run
    synced_dir = _outage_then_sync(mlflow_server, tmp_path / "synced", common)
    # 4. kiln registry register of a run whose model never reached MLflow: it logs it itself
    unlogged = run_cli(*TRAIN, "training.epochs=1", f"run.output_dir={tmp_path / 'unlogged'}", *common,
                       "tracking.log_model=false", "tracking.backends=[jsonl,mlflow]")
    assert unlogged.returncode == 0, unlogged.stderr
    unlogged_dir = _only_run(tmp_path / "unlogged")
    assert wait_for_finisher(unlogged_dir)
    result = run_cli("registry", "register", str(unlogged_dir), "--name", "interop-unlogged")
    assert result.returncode == 0, result.stderr

    assert wait_for_finisher(trained_dir)
    models = {
        "trained": f"runs:/{_link(trained_dir)['run_id']}/model",
        "registered": "models:/interop-registered/1",
        "synced": f"runs:/{_link(synced_dir)['run_id']}/model",
        "unlogged": "models:/interop-unlogged/1",
    }
    runs = {"trained": trained_dir, "registered": registered_dir, "synced": synced_dir, "unlogged": unlogged_dir}
    predicted = _predict_with_plain_mlflow(mlflow_server.uri, models, tmp_path)
    for name, run_dir in runs.items():
        assert isinstance(predicted[name], dict), f"{name}: {predicted[name]}"
        for n in (1, 7):
            for form in ("shaped", "flat"):
                np.testing.assert_allclose(np.array(predicted[name][f"{form}{n}"], dtype=np.float32),
                                           _expected(run_dir, n), rtol=1e-5, atol=1e-6, err_msg=f"{name} {form}{n}")
    # Say whether the register test saw the race it is about (it passes either way, but it
    # must have been run with the finisher pending on a machine like CI's at least sometimes).
    print(f"finisher pending when register ran: {pending is not None}")


def _outage_then_sync(server: MlflowServer, output: Path, common: tuple[str, ...]) -> Path:
    """Train while the server goes down mid-run and comes back after; then ``kiln sync``."""
    from mlflow import MlflowClient

    process = subprocess.Popen(
        [sys.executable, "-m", "kiln", *TRAIN, "training.epochs=60", f"run.output_dir={output}", *common,
         "tracking.backends=[jsonl,mlflow]"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    client = MlflowClient(server.uri)
    deadline = time.monotonic() + 300
    while True:  # poll until MLflow holds an epoch of this run: the server is in use mid-run
        assert process.poll() is None and time.monotonic() < deadline, "training did not get going"
        links = list(output.glob("*/logs/mlflow.json"))
        if links and "val_loss" in client.get_run(json.loads(links[0].read_text())["run_id"]).data.metrics:
            break
        time.sleep(0.1)
    server.stop()
    try:
        assert process.poll() is None, "the run ended before the outage: it needs more epochs"
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr and server.uri in stderr, stderr
    finally:
        server.start()
    run_dir = _only_run(output)
    assert wait_for_finisher(run_dir)  # the worker stopped at the outage and let go of the run
    synced = run_cli("sync", str(run_dir))
    assert synced.returncode == 0, synced.stderr
    assert "model logged" in synced.stdout, synced.stdout
    return run_dir


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
