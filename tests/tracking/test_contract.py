"""Every built-in tracker passes kiln's tracker contract, and writes what it was given."""

from __future__ import annotations

import csv
from pathlib import Path

from kiln.testing.tracker_contract import check_tracker
from kiln.tracking import JsonlTracker, read_events
from kiln.tracking.csv import CsvTracker
from kiln.tracking.tensorboard import TensorBoardTracker


def test_jsonl(tmp_path: Path) -> None:
    check_tracker(JsonlTracker(tmp_path / "events.jsonl"), tmp_path)
    records = read_events(tmp_path / "events.jsonl")
    assert records[0]["event"] == "params" and records[-1]["event"] == "closed"
    assert records[1]["metrics"]["nonfinite"] is None  # JSON has no NaN: written as null


def test_csv(tmp_path: Path) -> None:
    check_tracker(CsvTracker(tmp_path / "log.csv"), tmp_path)
    with (tmp_path / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["loss"] for r in rows] == ["0.5", "0.25"]  # epoch rows only


def test_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    check_tracker(TensorBoardTracker(tmp_path / "tb"), tmp_path)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("loss")] == [0.5, 0.25]
    assert "step/loss" in acc.Tags()["scalars"] and "system/loss" in acc.Tags()["scalars"]


def test_mlflow(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from kiln.tracking.mlflow import MlflowTracker

    (tmp_path / "logs").mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "contract", "run", tmp_path / "logs", {"kiln.version": "test"},
                            (tmp_path / "art").as_uri())
    check_tracker(tracker, tmp_path)
    run = MlflowClient(uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["loss"] == 0.25 and "nonfinite" not in run.data.metrics
    assert run.data.params["model.hidden"] == "[16, 8]"
    steps = {m.step: m.value for m in MlflowClient(uri).get_metric_history(tracker.run_id, "step/loss")}
    assert steps == {2: 0.5, 6: 0.2, 7: 0.1}  # log_metrics, then two steps in one log_metric_records
