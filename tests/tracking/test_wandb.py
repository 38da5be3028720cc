"""The W&B tracker, offline: the records are read back from the run's own ``.wandb`` log with
``wandb leet inspect --json`` (W&B's own reader), so nothing here needs a W&B server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kiln import Trainer
from kiln.testing import tiny_config
from kiln.testing.tracker_contract import check_tracker

pytest.importorskip("wandb", reason="the wandb extra is not installed: pip install 'kiln-ml[wandb]'")


def wandb_records(wandb_dir: Path) -> list[dict[str, Any]]:
    """Every record of every offline run under ``wandb_dir``, in the order written."""
    records: list[dict[str, Any]] = []
    for log in sorted(wandb_dir.glob("offline-run-*/run-*.wandb")):
        out = subprocess.run(
            [str(Path(sys.executable).with_name("wandb")), "leet", "inspect", "--json", str(log)],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        records += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return records


def history(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(global_step, value) of every logged ``key``."""
    rows = [r["history"]["item"] for r in records if r["type"] == "history"]
    return [(int(row["global_step"]), row[key]) for row in rows if key in row]


def test_wandb_tracker_passes_the_contract(tmp_path: Path) -> None:
    from kiln.tracking.wandb import WandbTracker

    tracker = WandbTracker(tmp_path / "logs", "contract", "run_20261123_000000", {"kiln.version": "test"})
    check_tracker(tracker, tmp_path)
    records = wandb_records(tmp_path / "logs" / "wandb")
    assert history(records, "loss") == [(1, 0.5), (5, 0.25)]  # epoch scope, against global_step
    assert history(records, "step/loss") == [(2, 0.5), (6, 0.2), (7, 0.1)]  # the last two one by one
    config = [r["config"]["update"] for r in records if r["type"] == "config"]
    assert any(update.get("model.hidden") == [16, 8] for update in config)
    assert [r["exit"]["exit_code"] for r in records if r["type"] == "exit"] == [0]


@pytest.mark.slow
def test_training_run_logs_to_wandb_offline_and_resume_appends_to_the_same_run(tmp_path: Path) -> None:
    from kiln.train.resume import plan_resume

    first = Trainer(tiny_config(tmp_path, backends=("jsonl", "wandb")), quiet=True).fit()
    plan = plan_resume(first.run_dir, ["training.epochs=3"])
    assert plan.checkpoint is not None
    Trainer(plan.config, quiet=True, resume_from=plan.checkpoint, run_dir=first.run_dir).fit()

    wandb_dir = first.run_dir / "logs" / "wandb"
    runs = {r["run"]["run_id"] for r in wandb_records(wandb_dir) if r["type"] == "run"}
    assert runs == {first.run_dir.name}  # both processes wrote to one W&B run
    records = wandb_records(wandb_dir)
    steps = [step for step, _ in history(records, "val_loss")]
    assert steps == [21, 42, 63]  # one point per epoch, none repeated after the resume
    summary: dict[str, Any] = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"].get("update", {}))
    assert summary["test_accuracy"] == pytest.approx(first.test_metrics["test_accuracy"], abs=0.2)
