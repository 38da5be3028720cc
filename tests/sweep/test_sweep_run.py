"""Sweeps run in this process against real SQLite studies: grid coverage, resumption, failures,
pruning, the report and best.yaml, and the nested MLflow runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from kiln.config import load_config
from kiln.errors import ConfigError
from kiln.runs import read_summary
from kiln.sweep import SweepError, open_report, run_sweep
from kiln.sweep.objective import model_epoch
from kiln.train import Trainer
from tests.sweep.conftest import base_overrides, grid_points, trials_of, write_sweep

GRID = [(("model.dropout", d), ("training.lr", lr)) for d in (0.0, 0.2) for lr in (0.001, 0.01)]


@pytest.mark.slow
def test_grid_runs_every_point_once_and_best_yaml_trains_to_the_reported_metric(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "grid.yaml")
    lines: list[str] = []
    # With early stopping the model a run ends with has its best epoch's weights: that epoch's
    # val_accuracy is the trial's value.
    overrides = base_overrides(tmp_path / "runs", "training.epochs=3", "training.early_stopping.patience=5")
    outcome = run_sweep(None, sweep, overrides, echo=lines.append)
    assert outcome.exit_code == 0
    ctx, report = outcome.ctx, outcome.report
    trials = trials_of(ctx.storage, ctx.study_name)
    assert grid_points(trials) == sorted(GRID) and len(trials) == 4
    assert ctx.sweep_dir == (tmp_path / "runs/sweeps/tiny-grid").resolve()
    assert sum("completed" in line for line in lines) == 4
    # Each trial is a full kiln run of its own, with the trial's values in its config.
    for trial in trials:
        run_dir = Path(trial.user_attrs["run_dir"])
        assert run_dir.parent == ctx.sweep_dir / "trials"
        cfg = load_config(run_dir / "config.yaml")
        assert (cfg.training.lr, cfg.model.dropout) == (trial.params["training.lr"], trial.params["model.dropout"])
        summary = read_summary(run_dir)
        assert summary.best is not None
        assert summary.restored_best_epoch == trial.user_attrs["metric_epoch"] == summary.best.epoch
        assert summary.best.metrics["val_accuracy"] == trial.value
    # The table is sorted by the metric, best first.
    values = [row["val_accuracy"] for row in report.rows]
    assert values == sorted(values, reverse=True) and report.best is not None
    assert report.best["value"] == values[0] == max(t.value for t in trials if t.value is not None)
    assert {p.name for p in (ctx.sweep_dir / "plots").iterdir()} == {
        "optimization_history.png", "param_importances.png", "parallel_coordinates.png"}
    assert json.loads((ctx.sweep_dir / "report.json").read_text())["best"]["number"] == report.best["number"]
    # best.yaml is ready to train, and trains to the reported metric.
    best = load_config(ctx.sweep_dir / "best.yaml")
    assert best.run.experiment == "tiny" and best.tracking.register is None
    assert best.training.lr == report.best["params"]["training.lr"]
    assert best.model.dropout == report.best["params"]["model.dropout"]
    result = Trainer(best, quiet=True).fit()
    assert model_epoch(result)[1]["val_accuracy"] == report.best["value"]
    assert result.test_metrics == {k: v for k, v in report.best["final"].items() if k.startswith("test_")}

    # The same command again: the study is complete, nothing runs twice.
    again = run_sweep(None, sweep, overrides, echo=lines.append, plots=False)
    assert again.exit_code == 0 and len(trials_of(ctx.storage, ctx.study_name)) == 4
    assert "resuming: 4 trial(s) already done or under way" in lines
    # ... but not with another search under the same study name.
    other = write_sweep(tmp_path / "grid.yaml", parameters={"training.lr": {"choice": [0.05]}})
    with pytest.raises(SweepError, match="started with a different search or config"):
        run_sweep(None, other, overrides, echo=lines.append)
    with pytest.raises(SweepError, match=r"training\.epochs: 3 -> 4"):
        run_sweep(None, sweep, [*overrides, "training.epochs=4"], echo=lines.append)


def test_a_failing_trial_records_why_and_the_sweep_goes_on(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "fail.yaml", parameters={
        "model.target": {"choice": [None, "tests.sweep.broken:broken_model"]},
        "training.lr": {"choice": [0.01]},
    })
    outcome = run_sweep(None, sweep, base_overrides(tmp_path / "runs"), echo=lambda _: None, plots=False)
    assert outcome.exit_code == 0  # one trial completed
    trials = {t.params["model.target"]: t for t in trials_of(outcome.ctx.storage, outcome.ctx.study_name)}
    failed = trials["tests.sweep.broken:broken_model"]
    assert failed.state == TrialState.FAIL and failed.user_attrs["status"] == "failed"
    error = failed.user_attrs["error"]
    assert "this model is broken on purpose" in error and "Traceback" not in error and "\n" not in error
    assert trials[None].state == TrialState.COMPLETE
    row = next(r for r in outcome.report.rows if r["status"] == "failed")
    assert "broken on purpose" in row["note"]
    assert outcome.report.counts["failed"] == 1 and outcome.report.budget_used == 2


def test_pruned_trials_stop_early_and_record_the_epoch(tmp_path: Path) -> None:
    # Three good learning rates and a hopeless one, which the grid (seed 0) runs second: by then a
    # trial has finished, and the median pruner stops it once its warm-up epochs are over.
    sweep = write_sweep(
        tmp_path / "prune.yaml", parameters={"training.lr": {"choice": [0.05, 0.02, 0.03, 1e-7]}},
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 2},
    )
    outcome = run_sweep(None, sweep, base_overrides(tmp_path / "runs", "training.epochs=4"),
                        echo=lambda _: None, plots=False)
    trials = trials_of(outcome.ctx.storage, outcome.ctx.study_name)
    pruned = {t.params["training.lr"]: t for t in trials if t.state == TrialState.PRUNED}
    assert 1e-7 in pruned, [(t.params, t.state) for t in trials]
    for trial in pruned.values():  # the median of one finished trial can prune good ones too
        epoch = trial.user_attrs["pruned_at_epoch"]
        assert 2 <= epoch < 4 and trial.user_attrs["status"] == "pruned"
        assert sorted(trial.intermediate_values) == list(range(1, epoch + 1))
        summary = read_summary(Path(trial.user_attrs["run_dir"]))
        assert summary.epochs_trained == epoch
        assert summary.stop_reason == f"pruned by the sweep's pruner at epoch {epoch}"
        row = next(r for r in outcome.report.rows if r["trial"] == trial.number)
        assert row["status"] == "pruned" and row["note"] == f"pruned at epoch {epoch}"
    assert pruned[1e-7].user_attrs["pruned_at_epoch"] == 2
    assert trials[0].state == TrialState.COMPLETE


def test_an_unknown_metric_stops_the_sweep_with_the_metrics_that_exist(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "metric.yaml", metric="val_acc")
    with pytest.raises(ConfigError, match=r"'val_acc' is not produced by these runs; they have: .*val_accuracy"):
        run_sweep(None, sweep, base_overrides(tmp_path / "runs"), echo=lambda _: None)
    (trial,) = trials_of(f"sqlite:///{tmp_path / 'runs/sweeps/tiny-metric/study.db'}", "tiny-metric")
    assert trial.user_attrs["status"] == "failed"


@pytest.mark.slow
def test_trials_are_mlflow_runs_nested_under_the_sweeps_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    sweep = write_sweep(tmp_path / "ml.yaml", parameters={"training.lr": {"choice": [0.001, 0.01]}})
    overrides = base_overrides(tmp_path / "runs", "tracking.backends=[jsonl,mlflow]", "tracking.log_model=false")
    outcome = run_sweep(None, sweep, overrides, echo=lambda _: None)
    ctx, report = outcome.ctx, outcome.report
    assert ctx.tracking_uri == f"sqlite:///{(tmp_path / 'runs/mlflow.db').resolve()}"
    client = MlflowClient(ctx.tracking_uri)
    assert ctx.parent_run_id is not None
    parent = client.get_run(ctx.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["kiln.sweep.study"] == "tiny-ml"
    assert report.best is not None
    assert parent.data.metrics["best_val_accuracy"] == report.best["value"]
    artifacts = {a.path for a in client.list_artifacts(ctx.parent_run_id)}
    assert {"best.yaml", "trials.csv", "plots"} <= artifacts
    assert {a.path for a in client.list_artifacts(ctx.parent_run_id, "plots")} == {
        "plots/optimization_history.png", "plots/param_importances.png", "plots/parallel_coordinates.png"}
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{ctx.parent_run_id}'")
    by_trial = {int(run.data.tags["kiln.sweep.trial"]): run for run in children}
    trials = trials_of(ctx.storage, ctx.study_name)
    assert sorted(by_trial) == sorted(t.number for t in trials)
    for trial in trials:
        child = by_trial[trial.number]
        assert child.data.tags["kiln.sweep.param.training.lr"] == str(trial.params["training.lr"])
        assert child.data.tags["kiln.sweep.status"] == "completed"
        assert child.data.metrics["val_accuracy"] == trial.value
        link = json.loads((Path(trial.user_attrs["run_dir"]) / "logs/mlflow.json").read_text())
        assert link["run_id"] == child.info.run_id
    # The report can be made again at any time, from the sweep directory.
    _, again = open_report(str(ctx.sweep_dir), plots=False)
    assert again.best == report.best
