"""``run.dir``: one fixed run directory, and the one call that starts, continues or reports it
(:mod:`kiln.train.fixed_dir`, ``kiln.train.resume_run.run_in_dir``). The CLI under real kills:
tests/integration/test_restart.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.config.schema import KilnConfig
from kiln.errors import ConfigError, PathError
from kiln.runs import read_summary
from kiln.testing import tiny_config
from kiln.tracking import read_events
from kiln.train import Trainer
from kiln.train.fixed_dir import RunDirChoice, choose
from kiln.train.resume_run import run_in_dir
from kiln.train.start_over import new_or_fixed_run_dir

COMMON = ("tracking.system_metrics=false",)


def fixed(tmp_path: Path, run_dir: Path, *overrides: str) -> KilnConfig:
    return tiny_config(tmp_path / "runs", *COMMON, f"run.dir={run_dir}", *overrides)


@pytest.mark.parametrize("leftover", [None, (), ("logs/", "models/", "config.yaml.tmp")],
                         ids=["missing", "empty", "killed-before-config"])
def test_a_free_directory_starts_a_new_run(tmp_path: Path, leftover: tuple[str, ...] | None) -> None:
    run_dir = tmp_path / "job"
    if leftover is not None:
        run_dir.mkdir()
        for name in leftover:
            (run_dir / name).mkdir() if name.endswith("/") else (run_dir / name).write_text("# half")
    cfg = fixed(tmp_path, run_dir)
    assert choose(cfg) == RunDirChoice(run_dir, holds_run=False)
    paths = new_or_fixed_run_dir(cfg)
    assert paths.root == run_dir and paths.config.is_file() and not (run_dir / "config.yaml.tmp").exists()


def test_a_directory_holding_something_else_is_refused_naming_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "home"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "logs").mkdir()
    (run_dir / "logs" / "old.log").write_text("not kiln's")
    with pytest.raises(PathError, match=r"has no config\.yaml\) and is not empty: it holds logs/, notes\.txt"):
        choose(fixed(tmp_path, run_dir))
    with pytest.raises(PathError, match="no place to start a run"):
        new_or_fixed_run_dir(fixed(tmp_path, run_dir))
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs", "notes.txt"]  # untouched


def test_the_same_config_continues_safe_changes_become_overrides_and_others_are_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "job"
    new_or_fixed_run_dir(fixed(tmp_path, run_dir))
    assert choose(fixed(tmp_path, run_dir)) == RunDirChoice(run_dir, True, ())
    # the same directory spelled another way is no difference
    respelled = fixed(tmp_path, tmp_path / "." / "job" / ".." / "job")
    assert choose(respelled).overrides == ()
    longer = choose(fixed(tmp_path, run_dir, "training.epochs=5", "training.eval_batch_size=100"))
    assert longer.overrides == ("training.epochs=5", "training.eval_batch_size=100")
    with pytest.raises(ConfigError) as refused:
        choose(fixed(tmp_path, run_dir, "training.lr=0.02", "model.hidden=[8]"))
    message = str(refused.value)
    assert "  - model.hidden: [16] -> [8]\n  - training.lr: 0.01 -> 0.02\n" in message
    assert "another --run-dir" in message
    allowed = choose(fixed(tmp_path, run_dir, "training.lr=0.02"), allow_config_change=True)
    assert allowed.overrides == ("training.lr=0.02",)
    with pytest.raises(PathError, match="already holds a run"):
        Trainer(fixed(tmp_path, run_dir), quiet=True).fit()


def test_run_in_dir_starts_then_reports_a_finished_run_without_training_then_trains_longer(tmp_path: Path) -> None:
    run_dir = tmp_path / "job"
    first = run_in_dir(fixed(tmp_path, run_dir), quiet=True)
    assert first.run_dir == run_dir and first.status == "completed"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no timestamped twin
    events = (run_dir / "logs/events.jsonl").read_bytes()
    again = run_in_dir(fixed(tmp_path, run_dir), quiet=True)
    assert again == first
    assert (run_dir / "logs/events.jsonl").read_bytes() == events  # nothing trained, nothing logged
    longer = run_in_dir(fixed(tmp_path, run_dir, "training.epochs=3"), quiet=True)
    assert longer.summary.epochs_trained == 3 and read_summary(run_dir).max_epochs == 3
    records = read_events(run_dir / "logs/events.jsonl")
    assert [r["metrics"]["epoch"] for r in records if r["event"] == "metrics" and r["scope"] == "epoch"] == [1, 2, 3]
