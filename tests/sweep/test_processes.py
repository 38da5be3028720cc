"""Sweeps as real processes: Ctrl-C and rerun, two workers on one SQLite study, a worker killed
with SIGKILL, two "machines" sharing a PostgreSQL study, and the CLI around them."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest
from optuna.trial import TrialState

from kiln.sweep import run_sweep
from kiln.sweep.trials import retry_of, status
from tests.conftest import run_cli
from tests.sweep.conftest import (
    base_overrides,
    grid_points,
    runs_with_checkpoint,
    started_sweep,
    trials_of,
    wait_for,
    write_sweep,
)

GRID_6 = {"training.lr": {"choice": [0.003, 0.01, 0.03]}, "model.dropout": {"choice": [0.0, 0.2]}}
GRID_4 = [(("model.dropout", d), ("training.lr", lr)) for d in (0.0, 0.2) for lr in (0.001, 0.01)]


def _sqlite(tmp_path: Path, study: str) -> str:
    return f"sqlite:///{(tmp_path / 'runs/sweeps' / study / 'study.db').resolve()}"


@pytest.mark.slow
def test_ctrl_c_checkpoints_the_running_trial_and_a_rerun_resumes_it(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "grid.yaml")
    overrides = base_overrides(tmp_path / "runs", "training.epochs=6", "training.batch_size=16")
    trials_dir = tmp_path / "runs/sweeps/tiny-grid/trials"
    with started_sweep("-s", str(sweep), *overrides, "--no-plots", cwd=tmp_path) as process:
        wait_for(lambda: len(runs_with_checkpoint(trials_dir)) >= 2, "a second trial's checkpoint", process=process)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "run the same command again to resume" in out and "Traceback" not in err

    storage = _sqlite(tmp_path, "tiny-grid")
    before = trials_of(storage, "tiny-grid")
    (interrupted,) = [t for t in before if status(t) == "interrupted"]
    assert interrupted.state == TrialState.FAIL and "SIGINT received" in interrupted.user_attrs["error"]
    (queued,) = [t for t in before if t.state == TrialState.WAITING]
    assert retry_of(queued) == interrupted.number and queued.params == interrupted.params

    outcome = run_sweep(None, sweep, overrides, echo=lambda _: None, plots=False)
    assert outcome.exit_code == 0
    after = trials_of(storage, "tiny-grid")
    assert grid_points(after) == sorted(GRID_4)  # every point once, none twice
    retry = next(t for t in after if retry_of(t) == interrupted.number)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["run_dir"] == interrupted.user_attrs["run_dir"]  # the same run, resumed
    assert retry.user_attrs["resumed_from"].startswith(Path(interrupted.user_attrs["run_dir"]).name)
    completed_before = {t.number for t in before if t.state == TrialState.COMPLETE}
    assert completed_before <= {t.number for t in after if t.state == TrialState.COMPLETE}
    counts = outcome.report.counts
    assert (counts["completed"], counts["interrupted"], counts["waiting"]) == (4, 1, 0)


@pytest.mark.slow
def test_two_workers_share_a_sqlite_study_and_a_killed_workers_trial_is_retried(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "grid.yaml", workers=2)
    overrides = base_overrides(tmp_path / "runs", "training.epochs=8", "training.batch_size=16")
    storage = _sqlite(tmp_path, "tiny-grid")
    trials_dir = tmp_path / "runs/sweeps/tiny-grid/trials"

    def running_with_checkpoint() -> list[int]:
        dirs = {str(p.resolve()) for p in runs_with_checkpoint(trials_dir)}
        if not dirs:
            return []
        return [t.number for t in trials_of(storage, "tiny-grid")
                if t.state == TrialState.RUNNING and t.user_attrs.get("run_dir") in dirs]

    with started_sweep("-s", str(sweep), *overrides, "--no-plots", cwd=tmp_path) as process:
        found: list[int] = []

        def spotted() -> bool:
            found.extend(running_with_checkpoint())
            return bool(found)

        wait_for(spotted, "a running trial with a checkpoint", process=process)
        victim = next(t for t in trials_of(storage, "tiny-grid") if t.number == found[0])
        os.kill(int(victim.user_attrs["host"].rsplit(":", 1)[1]), signal.SIGKILL)
        out, err = process.communicate(timeout=300)
    assert process.returncode == 0, out + err
    assert "was killed by SIGKILL" in out and "locked" not in out + err

    trials = trials_of(storage, "tiny-grid")
    assert grid_points(trials) == sorted(GRID_4)  # no point twice, though two workers raced
    lost = next(t for t in trials if t.number == victim.number)
    assert status(lost) == "lost" and lost.state == TrialState.FAIL
    retry = next(t for t in trials if retry_of(t) == lost.number)
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params
    assert retry.user_attrs["run_dir"] == lost.user_attrs["run_dir"] and "resumed_from" in retry.user_attrs
    hosts = {t.user_attrs["host"] for t in trials}
    assert len(hosts) == 2, hosts  # both workers took trials
    assert not [t for t in trials if status(t) in ("duplicate", "surplus", "failed")]


@pytest.mark.slow
def test_two_machines_share_a_postgresql_study(tmp_path: Path, postgres_url: str, pg_study: str) -> None:
    sweep = write_sweep(tmp_path / "grid.yaml", parameters=GRID_6, n_trials=5)
    with contextlib.ExitStack() as stack:
        machines = [
            stack.enter_context(started_sweep(
                "-s", str(sweep), *base_overrides(tmp_path / name / "runs"), "--storage", postgres_url,
                "--study-name", pg_study, "--no-plots", cwd=tmp_path))
            for name in ("a", "b")
        ]
        results = [m.communicate(timeout=300) for m in machines]
    for machine, (out, err) in zip(machines, results, strict=True):
        assert machine.returncode == 0, out + err
    trials = trials_of(postgres_url, pg_study)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(completed) == 5 and len(set(grid_points(trials))) == 5  # the budget, no point twice
    assert not [t for t in trials if status(t) in ("duplicate", "failed")]
    assert {t.user_attrs["run_dir"].split(os.sep)[-6] for t in completed} == {"a", "b"}  # both worked
    # The report, from a third place that has no sweep directory: rebuilt from the study.
    report = run_cli("sweep-report", pg_study, "--storage", postgres_url, "--no-plots", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "best: trial" in report.stdout and "trials: 5 completed" in report.stdout


@pytest.mark.slow
def test_cli_errors_and_sweep_report(tmp_path: Path) -> None:
    missing = run_cli("sweep", *base_overrides(tmp_path / "runs"), cwd=tmp_path)
    assert missing.returncode == 2 and "needs a sweep file" in missing.stderr
    bad = write_sweep(tmp_path / "bad.yaml", parameters={"training.learning_rate": {"choice": [0.1]}})
    typo = run_cli("sweep", "-s", str(bad), *base_overrides(tmp_path / "runs"), cwd=tmp_path)
    assert typo.returncode == 2 and "Did you mean 'training.lr'?" in typo.stderr
    assert "Traceback" not in typo.stderr and not (tmp_path / "runs").exists()
    unknown = run_cli("sweep-report", "nope", cwd=tmp_path)
    assert unknown.returncode == 1 and "neither a sweep directory nor a study" in unknown.stderr

    sweep = write_sweep(tmp_path / "one.yaml", parameters={"training.lr": {"choice": [0.01]}})
    outcome = run_sweep(None, sweep, base_overrides(tmp_path / "runs"), echo=lambda _: None, plots=False)
    report = run_cli("sweep-report", str(outcome.ctx.sweep_dir), "--no-plots", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "sweep tiny-one: maximize val_accuracy" in report.stdout
    assert "best: trial 0, val_accuracy=" in report.stdout and "best.yaml" in report.stdout
