"""The W&B tracker, offline: the records are read back from the run's own ``.wandb`` log with
``wandb leet inspect --json`` (W&B's own reader), so nothing here needs a W&B server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kiln import Trainer, resume
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


# Measurements of the machine, not of the model: they differ between any two runs.
TIMINGS = ("epoch_time", "samples_per_sec")


def logged(records: list[dict[str, Any]]) -> dict[tuple[str, int], float | None]:
    """Every history value but system metrics (sampled by the clock): {(key, global_step): value},
    with the values of timings left out (None); a point logged twice at one step fails."""
    out: dict[tuple[str, int], float] = {}
    for r in records:
        if r["type"] != "history":
            continue
        row = r["history"]["item"]
        for key, value in row.items():
            if key.startswith(("_", "system/")) or key == "global_step":
                continue
            point = (key, int(row["global_step"]))
            assert point not in out, f"{point} logged twice"
            out[point] = None if key in TIMINGS else value
    return out


def summary_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"].get("update", {}))
    return {k: v for k, v in summary.items() if not k.startswith(("_", "system/")) and k not in TIMINGS}


@pytest.mark.slow
def test_a_resumed_run_logs_to_one_wandb_run_exactly_what_an_uninterrupted_run_logs(tmp_path: Path) -> None:
    from kiln.train.resume import plan_resume

    first = Trainer(tiny_config(tmp_path / "resumed", backends=("jsonl", "wandb")), quiet=True).fit()
    plan = plan_resume(first.run_dir, ["training.epochs=3"])
    assert plan.checkpoint is not None
    resume(first.run_dir, ["training.epochs=3"], quiet=True)
    straight = Trainer(tiny_config(tmp_path / "straight", "training.epochs=3", backends=("jsonl", "wandb")),
                       quiet=True).fit()

    resumed = wandb_records(first.run_dir / "logs" / "wandb")
    assert {r["run"]["run_id"] for r in resumed if r["type"] == "run"} == {first.run_dir.name}  # one W&B run
    uninterrupted = wandb_records(straight.run_dir / "logs" / "wandb")
    history = logged(resumed)
    assert sorted(step for key, step in history if key == "val_loss") == [21, 42, 63]  # none repeated
    # An exact resume: every point, and the test metrics in the summary, to the last bit.
    assert history == logged(uninterrupted)
    summary = summary_of(resumed)
    assert {k for k in summary if k.startswith("test_")} == {"test_loss", "test_accuracy"}
    assert summary == summary_of(uninterrupted)
    assert summary["test_accuracy"] == straight.test_metrics["test_accuracy"]
