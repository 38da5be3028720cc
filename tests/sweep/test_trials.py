"""Budget, duplicates and the worker's next step, on a real SQLite study; SQLite under several
processes at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from kiln.sweep import parse_sweep
from kiln.sweep.loop import next_action
from kiln.sweep.study import make_storage
from kiln.sweep.trials import conflict, counts, status

LR = optuna.distributions.CategoricalDistribution([0.1, 0.2, 0.3])
SPEC = parse_sweep({"method": "grid", "parameters": {"training.lr": {"choice": [0.1, 0.2, 0.3]}},
                    "heartbeat": {"interval": 1, "grace_period": 3}})


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    """A real SQLite study, driven by ask/tell (so without heartbeats, which need optimize)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s",
                               direction="maximize")


def _add(study: optuna.Study, lr: float, state: TrialState = TrialState.RUNNING, status: str = "running",
         value: float | None = None) -> int:
    """A trial at the grid point ``lr``, as a worker would have left it; its number."""
    study.add_trial(optuna.create_trial(
        state=state, value=value, params={"training.lr": lr}, distributions={"training.lr": LR},
        user_attrs={"status": status},
    ))
    return study.get_trials()[-1].number


def _frozen(study: optuna.Study) -> dict[int, Any]:
    return {t.number: t for t in study.get_trials()}


def _retry(study: optuna.Study, number: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, _frozen(study)[number])


def test_budget_is_shared_and_decided_by_trial_number(study: optuna.Study) -> None:
    _add(study, 0.1, TrialState.COMPLETE, "completed", 0.9)
    interrupted = _add(study, 0.2, TrialState.FAIL, "interrupted")
    _retry(study, interrupted)  # queued again: it stands in for the interrupted one
    a, b = _add(study, 0.3), _add(study, 0.3)  # two workers racing for the last slot
    trials = _frozen(study)
    assert [status(t) for t in trials.values()] == ["completed", "interrupted", "waiting", "running", "running"]
    assert [counts(t) for t in trials.values()] == [True, False, True, True, True]
    listed = list(trials.values())
    assert conflict(trials[a], listed, budget=3, grid=False) is None
    assert conflict(trials[b], listed, budget=3, grid=False) == (
        "surplus", "the budget of 3 trials was already taken by other workers")
    assert conflict(trials[2], listed, budget=3, grid=False) is None  # a retry is never surplus


def test_a_grid_point_has_one_owner(study: optuna.Study) -> None:
    finished = _add(study, 0.1, TrialState.COMPLETE, "completed", 0.5)
    first, second, again = _add(study, 0.2), _add(study, 0.2), _add(study, 0.1)
    trials = _frozen(study)
    listed = list(trials.values())
    assert conflict(trials[first], listed, budget=None, grid=True) is None
    assert conflict(trials[second], listed, None, True) == ("duplicate", f"grid point already taken by trial {first}")
    assert conflict(trials[again], listed, None, True) == ("duplicate", f"grid point already taken by trial {finished}")
    # A queued retry owns its point against a newer trial that took it meanwhile.
    lost = _add(study, 0.3, TrialState.FAIL, "running")  # FAIL while "running": its worker died
    assert status(_frozen(study)[lost]) == "lost" and not counts(_frozen(study)[lost])
    _retry(study, lost)
    newer = _add(study, 0.3)
    trials = _frozen(study)
    retry = next(t for t in trials.values() if t.state == TrialState.WAITING)
    assert conflict(trials[newer], list(trials.values()), None, True) == (
        "duplicate", f"grid point already taken by trial {retry.number}")
    assert conflict(retry, list(trials.values()), None, True) is None


def test_next_action(study: optuna.Study) -> None:
    assert next_action([], budget=1, timed_out=False) == "run"
    _add(study, 0.1)
    assert next_action(study.get_trials(), budget=1, timed_out=False) == "wait"  # for the other worker
    assert next_action(study.get_trials(), budget=None, timed_out=False) == "run"
    assert next_action(study.get_trials(), budget=None, timed_out=True) == "done"
    _add(study, 0.2, TrialState.FAIL, "interrupted")
    assert next_action(study.get_trials(), budget=2, timed_out=False) == "run"  # it does not count
    _add(study, 0.3, TrialState.COMPLETE, "completed", 0.5)
    _retry(study, 1)
    assert next_action(study.get_trials(), budget=2, timed_out=False) == "run"  # the queued retry


_HAMMER = textwrap.dedent("""
    import sys, warnings, optuna
    from kiln.sweep import parse_sweep
    from kiln.sweep.study import make_storage
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = parse_sweep({"method": "random", "n_trials": 1, "heartbeat": {"interval": 1, "grace_period": 60},
                        "parameters": {"training.lr": {"uniform": [0, 1]}}})
    study = optuna.load_study(study_name="s", storage=make_storage(sys.argv[1], spec))
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        for step in range(5):
            trial.report(x, step)
            trial.set_user_attr(f"a{step}", step)
        return x
    for _ in range(12):
        study.optimize(objective, n_trials=1)
""")


@pytest.mark.slow
def test_sqlite_takes_several_processes_without_database_is_locked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=make_storage(url, SPEC), study_name="s")
    processes = [subprocess.Popen([sys.executable, "-W", "error", "-c", _HAMMER, url], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    results = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
        assert "locked" not in err
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    assert len(trials) == 36 and len({t.number for t in trials}) == 36
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_sampler_and_pruner_follow_the_sweep_file() -> None:
    from kiln.sweep.study import make_pruner, make_sampler

    grid = parse_sweep({"method": "grid", "seed": 7, "parameters": {
        "training.lr": {"choice": [0.1, 0.2]}, "training.epochs": {"int": [1, 5], "step": 2}}})
    sampler = make_sampler(grid, worker=3)
    assert isinstance(sampler, optuna.samplers.GridSampler) and grid.budget() == 6
    # Every worker and machine walks the grid in the same order.
    other = make_sampler(grid, worker=0)
    assert isinstance(other, optuna.samplers.GridSampler)
    assert other._all_grids == sampler._all_grids
    tpe = parse_sweep({"method": "tpe", "n_trials": 4, "seed": 1, "pruner": {"name": "hyperband", "reduction_factor": 2},
                       "parameters": {"training.lr": {"loguniform": [1e-5, 1e-2]}}})
    assert isinstance(make_sampler(tpe, worker=0), optuna.samplers.TPESampler)
    hyperband = make_pruner(tpe, epochs=27)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner(SPEC, epochs=5), optuna.pruners.NopPruner)
    median = parse_sweep({"method": "random", "n_trials": 2, "pruner": "median", "parameters": {"model.dropout": {"uniform": [0, 0.5]}}})
    assert isinstance(make_pruner(median, epochs=5), optuna.pruners.MedianPruner)
