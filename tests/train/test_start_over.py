"""A run that stopped before its first checkpoint is no dead end: resuming it trains it again from
step 0 in its own directory, its logs cut back to the start, and it ends bit for bit like a run
that never stopped. Real runs, in this process; the CLI and real kills: tests/integration/test_restart.py."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import kiln
from kiln.errors import CheckpointError, PathError
from kiln.runs import read_summary
from kiln.testing import tiny_config
from kiln.tracking import read_events
from kiln.tracking.finisher import wait_for_finisher
from kiln.train import Callback, Trainer, TrainState
from kiln.train.resume import plan_resume
from kiln.train.trainer import TrainingInterrupted

COMMON = ("tracking.system_metrics=false", "tracking.log_every_n_steps=5")
TIMING = ("epoch_time", "samples_per_sec")
SAFETY = 120.0  # only keeps a wrong answer from hanging the suite


class Crash(Callback):
    """Raises in the middle of epoch ``epoch`` (0-based), after batch ``batch``: a crashed run."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_batch_end(self, state: TrainState) -> None:
        if (state.epoch, state.batch_in_epoch) == (self.epoch, self.batch):
            raise RuntimeError("the node went away")


class Sigterm(Callback):
    def on_batch_end(self, state: TrainState) -> None:
        if (state.epoch, state.batch_in_epoch) == (1, 4):
            os.kill(os.getpid(), signal.SIGTERM)


def epochs(run_dir: Path) -> list[dict[str, Any]]:
    records = read_events(run_dir / "logs/events.jsonl")
    found = [r["metrics"] for r in records if r["event"] == "metrics" and r["scope"] == "epoch"]
    return [{k: v for k, v in m.items() if k not in TIMING} for m in found]


def csv_epochs(run_dir: Path) -> list[int]:
    with (run_dir / "logs/training_log.csv").open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def assert_same_model(a: Path, b: Path) -> None:
    assert (a / "models/model.safetensors").read_bytes() == (b / "models/model.safetensors").read_bytes()
    assert read_summary(a).test == read_summary(b).test


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Trainer(tiny_config(tmp_path_factory.mktemp("straight"), *COMMON), quiet=True).fit().run_dir


def test_a_run_that_crashed_before_its_first_checkpoint_starts_over_and_ends_identical(
    tmp_path: Path, straight: Path
) -> None:
    with pytest.raises(RuntimeError, match="the node went away"):
        Trainer(tiny_config(tmp_path, *COMMON), callbacks=[Crash(0, 12)], quiet=True).fit()
    (run_dir,) = tmp_path.iterdir()
    assert not any((run_dir / "checkpoints").iterdir())  # checkpoints come at the end of each epoch
    assert read_summary(run_dir).status == "crashed"
    before = read_events(run_dir / "logs/events.jsonl")
    assert any(r["event"] == "metrics" and r["scope"] == "step" for r in before)  # it had trained

    plan = plan_resume(run_dir)
    assert plan.starts_over and plan.checkpoint is None and plan.finished_message is None
    result = kiln.resume(run_dir, quiet=True)

    assert result.run_dir == run_dir and result.status == "completed"
    assert [p.name for p in tmp_path.iterdir()] == [run_dir.name]  # no second directory
    assert_same_model(straight, run_dir)
    assert epochs(run_dir) == epochs(straight)
    assert csv_epochs(run_dir) == [1, 2]  # one history: nothing of the dropped start
    records = read_events(run_dir / "logs/events.jsonl")
    first = records[0]
    assert first["event"] == "restarted" and first["reason"] == "no checkpoint"
    assert first["restarts"] == 1 and first["previous_status"] == "crashed"
    assert first["reached_step"] == 10 and first["dropped_records"] == len(before)  # logged at step 5 and 10
    assert [r["event"] for r in records].count("fit_start") == 1
    steps = [r["step"] for r in records if r["event"] == "metrics" and r["scope"] == "step"]
    assert steps == sorted(set(steps))  # the dropped start's step 5 and 10 are there once
    assert read_summary(run_dir).status == "completed"


def test_a_run_stopped_by_sigterm_without_checkpointing_restarts_and_counts_its_restarts(
    tmp_path: Path,
) -> None:
    overrides = (*COMMON, "checkpoint.enabled=false", "training.epochs=3")
    reference = Trainer(tiny_config(tmp_path / "a", *overrides), quiet=True).fit().run_dir
    with pytest.raises(TrainingInterrupted):
        Trainer(tiny_config(tmp_path / "b", *overrides), callbacks=[Sigterm()], quiet=True).fit()
    (run_dir,) = (tmp_path / "b").iterdir()
    assert read_summary(run_dir).status == "interrupted" and csv_epochs(run_dir) == [1]
    with pytest.raises(RuntimeError, match="the node went away"):  # the first restart crashes too
        kiln.resume(run_dir, quiet=True, callbacks=[Crash(0, 3)])
    assert read_events(run_dir / "logs/events.jsonl")[0]["restarts"] == 1
    assert not (run_dir / "logs/training_log.csv").exists()  # epoch 1's row went with its start
    result = kiln.resume(run_dir, quiet=True)
    first = read_events(run_dir / "logs/events.jsonl")[0]
    assert first["event"] == "restarted" and first["restarts"] == 2 and first["previous_status"] == "crashed"
    assert result.status == "completed"
    assert_same_model(reference, run_dir)
    assert csv_epochs(run_dir) == [1, 2, 3]


def test_a_run_that_completed_without_checkpoints_is_finished_and_cannot_train_longer(tmp_path: Path) -> None:
    result = Trainer(tiny_config(tmp_path, *COMMON, "checkpoint.enabled=false"), quiet=True).fit()
    plan = plan_resume(result.run_dir)
    assert plan.finished_message is not None and "already finished all 2 epochs" in plan.finished_message
    assert not plan.starts_over
    with pytest.raises(CheckpointError, match="finished 2 epochs without writing a checkpoint"):
        plan_resume(result.run_dir, ["training.epochs=3"])


def test_a_directory_that_is_no_run_is_named_with_what_it_lacks(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PathError, match=r"is not a run directory: it has no config\.yaml"):
        plan_resume(tmp_path)


@pytest.mark.slow
def test_a_run_starting_over_keeps_its_mlflow_run_with_each_step_once(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    overrides = (*COMMON, "training.epochs=3", "checkpoint.every_n_epochs=3", "run.experiment=start-over",
                 "tracking.mlflow_start_delay=0")
    with pytest.raises(RuntimeError, match="the node went away"):  # after epoch 1, before any checkpoint
        Trainer(tiny_config(tmp_path, *overrides, backends=("jsonl", "mlflow")), callbacks=[Crash(1, 5)],
                quiet=True).fit()
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert wait_for_finisher(run_dir, SAFETY)
    link = json.loads((run_dir / "logs/mlflow.json").read_text())
    client = MlflowClient(link["tracking_uri"])
    assert client.get_metric_history(link["run_id"], "val_loss")  # epoch 1 reached MLflow

    assert kiln.resume(run_dir, quiet=True).status == "completed"
    assert wait_for_finisher(run_dir, SAFETY)
    assert json.loads((run_dir / "logs/mlflow.json").read_text()) == link  # the same MLflow run
    assert len(client.search_runs([link["experiment_id"]])) == 1
    run = client.get_run(link["run_id"])
    assert run.info.status == "FINISHED"
    in_mlflow: dict[tuple[str, int], float] = {}
    for key in run.data.metrics:
        for metric in client.get_metric_history(link["run_id"], key):
            assert (key, metric.step) not in in_mlflow, f"{key} twice at step {metric.step}"
            in_mlflow[(key, metric.step)] = metric.value
    prefix = {"epoch": "", "test": "", "step": "step/"}
    logged = {(prefix[r["scope"]] + key, r["step"]): value
              for r in read_events(run_dir / "logs/events.jsonl") if r["event"] == "metrics"
              for key, value in r["metrics"].items() if value is not None}
    assert set(in_mlflow) == set(logged)
    # MLflow keeps the first value logged at a step: epoch 1's timings stay those of the first start
    assert {k: v for k, v in in_mlflow.items() if k[0] not in TIMING} == {
        k: v for k, v in logged.items() if k[0] not in TIMING}
