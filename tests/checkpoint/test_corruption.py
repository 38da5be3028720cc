"""Every way the newest checkpoint can be damaged is refused by name, and resume falls back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tests.conftest import run_cli

import kiln
from kiln.testing import tiny_config
from kiln.tracking import read_events
from kiln.train import Trainer
from kiln.train.resume import plan_resume

FILES = ["model.safetensors", "optimizer.pt", "trainer.pt", "meta.json"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = tiny_config(tmp_path_factory.mktemp("runs"), "training.epochs=3", "checkpoint.keep_last_n=3")
    return Trainer(cfg, quiet=True).fit().run_dir


def damaged_copy(run: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    import shutil

    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    (copy / "summary.json").unlink()  # pretend the process died before finishing
    checkpoints = sorted((copy / "checkpoints").iterdir())
    assert len(checkpoints) == 3
    return copy, checkpoints[-1], checkpoints[-2]


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("damage", ["deleted", "truncated", "flipped"])
def test_damaged_file_is_named_and_previous_checkpoint_used(
    finished_run: Path, tmp_path: Path, name: str, damage: str
) -> None:
    run, newest, previous = damaged_copy(finished_run, tmp_path)
    target = newest / name
    if damage == "deleted":
        target.unlink()
        expected = f"{name} is missing"
    elif damage == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        expected = f"{name} has {len(data) // 2} bytes"
    else:
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
        expected = f"{name} fails its sha256 check"
    plan = plan_resume(run, ["training.epochs=4"])
    assert plan.checkpoint is not None and plan.checkpoint.path == previous
    (problem,) = plan.checkpoint.meta["skipped"]
    assert newest.name in problem and expected in problem


def test_missing_manifest_is_refused(finished_run: Path, tmp_path: Path) -> None:
    run, newest, previous = damaged_copy(finished_run, tmp_path)
    (newest / "manifest.json").unlink()
    plan = plan_resume(run, ["training.epochs=4"])
    assert plan.checkpoint is not None and plan.checkpoint.path == previous
    assert "manifest.json is missing" in plan.checkpoint.meta["skipped"][0]


def test_resume_after_fallback_completes(finished_run: Path, tmp_path: Path) -> None:
    run, newest, _ = damaged_copy(finished_run, tmp_path)
    (newest / "trainer.pt").write_bytes(b"garbage")
    plan = plan_resume(run, ["training.epochs=4"])
    assert plan.checkpoint is not None
    result = kiln.resume(run, ["training.epochs=4"], quiet=True)
    assert result.status == "completed" and result.summary.epochs_trained == 4


def test_all_checkpoints_broken_lists_every_problem(finished_run: Path, tmp_path: Path) -> None:
    from kiln.errors import CheckpointError

    run, _, _ = damaged_copy(finished_run, tmp_path)
    for checkpoint in (run / "checkpoints").iterdir():
        (checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no usable checkpoint(.|\n)*missing(.|\n)*missing(.|\n)*missing"):
        plan_resume(run)


def test_the_fallback_is_loud(finished_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """README: loading falls back to the previous checkpoint, loudly: a warning naming the refused
    checkpoint and what is wrong with it, on the console of `kiln resume` and in events.jsonl."""
    run, newest, previous = damaged_copy(finished_run, tmp_path)
    data = bytearray((newest / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (newest / "model.safetensors").write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="kiln"):
        plan = plan_resume(run, ["training.epochs=4"])
    assert plan.checkpoint is not None
    (problem,) = plan.checkpoint.meta["skipped"]
    assert problem.startswith(f"{newest.name}: model.safetensors fails its sha256 check"), problem
    warned = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("kiln.checkpoint", logging.WARNING, f"checkpoint refused: {problem}; falling back to the previous one") in warned
    assert ("kiln", logging.WARNING, f"skipped a broken checkpoint: {problem}") in warned

    resumed = run_cli("resume", str(run), "training.epochs=4", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert f"kiln: checkpoint refused: {problem}; falling back to the previous one\n" in resumed.stderr
    assert f"resuming {run} from checkpoint {previous.name}" in resumed.stdout
    (event,) = [e for e in read_events(run / "logs/events.jsonl") if e["event"] == "resumed"]
    assert event["checkpoint"] == previous.name and event["skipped_checkpoints"] == [problem]
