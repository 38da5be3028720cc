"""RunDir.open: the one check of "is this a run directory", with one error naming what is missing;
the typed reads of a run's records; the listing of ``kiln runs``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kiln.errors import PathError, RunError
from kiln.runs import RunDir, list_runs, read_summary
from tests.runs.summaries import summary_dict


def make_run(root: Path, name: str, summary: str | None = None) -> Path:
    run = root / name
    (run / "checkpoints" / "epoch0000-step00000023-batch00000").mkdir(parents=True)
    (run / "config.yaml").write_text("training:\n  epochs: 3\n")
    if summary is not None:
        (run / "summary.json").write_text(summary)
    return run


def test_open_says_in_one_error_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = {
        tmp_path / "nope": "is not a run directory: it does not exist",
        tmp_path / "file": "is not a run directory: it is a file",
        tmp_path / "empty": "is not a run directory: it has no config.yaml",
    }
    for path, problem in cases.items():
        with pytest.raises(PathError) as err:
            RunDir.open(path)
        assert str(err.value).startswith(f"{path} {problem}") and err.value.exit_code == 2
        assert err.value.hint == "pass a run directory (runs/<name>_<time>/); `kiln runs` lists them"
    with pytest.raises(PathError, match=r"empty is not a run directory: it has no config.yaml or logs/events.jsonl\n"):
        RunDir.open(tmp_path / "empty", ["logs/events.jsonl"])  # the message `kiln sync` shows
    run = make_run(tmp_path, "tiny_1")
    with pytest.raises(PathError) as err:
        RunDir.open(run, ["logs/events.jsonl"])
    assert str(err.value).startswith(f"{run} is a run directory but has no logs/events.jsonl")


def test_open_finds_the_run_above_a_checkpoint_and_reads_its_records(tmp_path: Path) -> None:
    run = make_run(tmp_path, "tiny_1")
    checkpoint = run / "checkpoints" / "epoch0000-step00000023-batch00000"
    assert RunDir.open(checkpoint, ["checkpoints"], up=2).root == run
    assert RunDir.open(run / "checkpoints", up=1) == RunDir(run)
    with pytest.raises(PathError, match="nor has any of the 1 directories above it"):
        RunDir.open(checkpoint, up=1)
    opened = RunDir.open(run)
    assert opened.read_config().training.epochs == 3
    assert opened.read_config(["training.epochs=5"]).training.epochs == 5
    assert opened.read_summary_if_any() is None  # killed before it wrote one
    with pytest.raises(PathError, match=r"has no summary\.json: the run has not finished"):
        read_summary(run)
    (run / "summary.json").write_text(json.dumps(summary_dict(status="interrupted")))
    assert read_summary(run).status == "interrupted" == opened.read_summary().status


def test_list_runs_shows_running_and_damaged_runs_instead_of_failing(tmp_path: Path) -> None:
    done = make_run(tmp_path, "a_done", json.dumps(summary_dict()))
    going = make_run(tmp_path, "b_going")
    broken = make_run(tmp_path, "c_broken", '{"status": "completed", ')
    (tmp_path / "mlflow.db").write_text("")  # not a run
    (tmp_path / "sweeps").mkdir()  # nor this
    for age, run in enumerate((broken, going, done)):  # newest first: done, going, broken
        os.utime(run, (1_000_000 + age, 1_000_000 + age))
    runs = list_runs(tmp_path)
    assert [(r.name, r.state) for r in runs] == [
        ("a_done", "completed"), ("b_going", "running or killed"), ("c_broken", "unreadable summary.json")]
    assert runs[0].summary is not None and runs[0].summary.test["test_accuracy"] == 0.86
    assert runs[1].summary is None and runs[2].summary is None
    assert list_runs(tmp_path / "none yet") == []
    with pytest.raises(RunError):
        RunDir(broken).read_summary()
