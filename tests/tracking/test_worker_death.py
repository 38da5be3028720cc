"""The MLflow worker process can die: killed by its pid mid-run, training goes on to its end, the
failure is reported once, and ``kiln sync`` later makes MLflow equal to events.jsonl (a second
sync adds nothing).

A real run in a subprocess, a real SQLite MLflow store, a real SIGKILL. The run's own callback
kills the worker at the end of its second epoch, once MLflow holds the first epoch's metrics, so
the kill lands mid-run, after the worker stored some records and before it stored others, every
time. ``kiln sync`` runs in this process through the CLI's own ``main`` (the real-process ``kiln
sync`` is in ``test_mlflow.py``): a second and third interpreter importing MLflow proved nothing more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.conftest import ROOT
from tests.tracking.test_mlflow import client_for, epoch_metrics, mlflow_metrics

from kiln.cli.main import main
from kiln.testing.tiny import TINY_OVERRIDES
from kiln.tracking import read_events

KILLED_WORKER_RUN = textwrap.dedent("""
    import logging, os, signal, sys, time
    from pathlib import Path

    import psutil

    from kiln.config.loader import load_config
    from kiln.tracking.mlflow import read_link
    from kiln.train import Callback, Trainer

    SAFETY = 120.0  # only keeps a broken worker from hanging the test

    class KillWorker(Callback):
        def on_epoch_end(self, state):
            if state.epoch != 1:
                return
            from mlflow import MlflowClient

            deadline = time.monotonic() + SAFETY
            while True:  # until MLflow holds the first epoch: the worker is live and storing
                link = read_link(state.run_dir / "logs")
                if link is not None and MlflowClient(link["tracking_uri"]).get_metric_history(link["run_id"], "val_loss"):
                    break
                assert time.monotonic() < deadline, "the MLflow worker never stored the first epoch"
                time.sleep(0.05)
            (worker,) = [p for p in psutil.Process().children() if "kiln.tracking.worker" in p.cmdline()]
            os.kill(worker.pid, signal.SIGKILL)
            print(f"killed {worker.pid}", flush=True)

    logging.basicConfig(level=logging.WARNING, format="kiln: %(message)s")  # as the CLI does
    result = Trainer(load_config(None, sys.argv[1:]), quiet=True, callbacks=[KillWorker()]).fit()
    print(result.status, result.run_dir, flush=True)
""")


def test_a_killed_mlflow_worker_costs_the_run_nothing_and_kiln_sync_fills_the_gap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "killed_worker_run.py"
    script.write_text(KILLED_WORKER_RUN)
    output = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, str(script), *TINY_OVERRIDES, "training.epochs=5", f"run.output_dir={output}",
         "tracking.backends=[jsonl,mlflow]", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
         "tracking.mlflow_start_delay=0", "tracking.log_every_n_steps=5",
         # the run's end must not wait for the dead worker: were it to, this test would time out
         "tracking.close_timeout=600"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    assert done.returncode == 0, done.stderr
    killed, finished = done.stdout.splitlines()
    (run_dir,) = output.iterdir()
    assert killed.startswith("killed ") and finished == f"completed {run_dir}"

    # Reported once: one warning line, one tracker_failed record; training went on to its end.
    warnings = [line for line in done.stderr.splitlines() if line.startswith("kiln: ")]
    assert warnings == [
        "kiln: tracking: tracker 'mlflow' failed and is disabled for this run: the mlflow worker process exited (-9)"
    ]
    assert "Traceback" not in done.stderr
    records = read_events(run_dir / "logs" / "events.jsonl")
    failed = [r for r in records if r["event"] == "tracker_failed"]
    assert [(r["tracker"], r["error"]) for r in failed] == [
        ("mlflow", "TrackingError: the mlflow worker process exited (-9)")
    ]
    epochs = [r["step"] for r in records if r["event"] == "metrics" and r["scope"] == "epoch"]
    assert epochs == [21, 42, 63, 84, 105]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["trackers"]["failed"] == {"mlflow": "TrackingError: the mlflow worker process exited (-9)"}

    # MLflow holds what the worker stored before it died, exactly, and lacks the rest.
    client, run_id = client_for(run_dir)
    truth = epoch_metrics(run_dir)
    before = mlflow_metrics(client, run_id)
    assert ("val_loss", 21) in before and ("val_loss", 105) not in before
    assert before == {key: truth[key] for key in before}
    assert client.get_run(run_id).info.status == "RUNNING"  # type: ignore[attr-defined]

    capsys.readouterr()
    assert main(["sync", str(run_dir)]) == 0
    synced = capsys.readouterr()
    assert synced.out == (
        f"{run_dir}: {len(truth) - len(before)} metric values sent to sqlite:///{tmp_path / 'mlflow.db'} "
        f"(run {run_id}, model logged)\n"
    )
    assert mlflow_metrics(client, run_id) == truth  # no gap, no duplicate (the helper asserts none)
    run = client.get_run(run_id)  # type: ignore[attr-defined]
    assert run.info.status == "FINISHED"
    assert run.data.params["training.epochs"] == "5"

    assert main(["sync", str(run_dir)]) == 0
    again = capsys.readouterr()
    assert again.out == f"{run_dir}: 0 metric values sent to sqlite:///{tmp_path / 'mlflow.db'} (run {run_id})\n"
    assert mlflow_metrics(client, run_id) == truth
