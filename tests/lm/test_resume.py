"""Resume mid-run is bit-exact for the language model, as for the classifiers."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

import kiln
from kiln.checkpoint import CheckpointManager
from kiln.tracking import read_events
from kiln.train import Callback, Trainer, TrainState
from kiln.train.resume import plan_resume
from kiln.train.trainer import TrainingInterrupted
from tests.lm.conftest import lm_config, write_text

# Dropout draws from the global RNG every step; a short text makes an epoch 11 batches, so the
# 45 steps cross epoch boundaries (new window orders) and the stop lands mid-epoch.
RESUME = (
    "model.dropout=0.1", "training.max_steps=45", "training.eval_every_n_steps=10",
    "checkpoint.every_n_steps=10", "checkpoint.keep_last_n=2",
)
TIMING = ("samples_per_sec", "tokens_per_sec", "epoch_time")


class StopAtStep(Callback):
    """Sends this process a real SIGTERM right after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, state: TrainState) -> None:
        if state.optimizer_stepped and state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def metrics(run_dir: Path) -> list[tuple[str, int, dict[str, Any]]]:
    return [
        (r["scope"], r["step"], {k: v for k, v in r["metrics"].items() if k not in TIMING})
        for r in read_events(run_dir / "logs/events.jsonl")
        if r["event"] == "metrics" and r["scope"] in ("step", "epoch", "test")
    ]


@pytest.mark.slow
def test_stopped_and_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    text = write_text(tmp_path, repeats=10)
    straight = Trainer(lm_config(tmp_path / "a", text, *RESUME), quiet=True).fit().run_dir

    with pytest.raises(TrainingInterrupted) as err:
        Trainer(lm_config(tmp_path / "b", text, *RESUME), callbacks=[StopAtStep(23)], quiet=True).fit()
    assert err.value.exit_code == 143
    (run_dir,) = (tmp_path / "b").iterdir()
    plan = plan_resume(run_dir)
    assert plan.checkpoint is not None
    assert (plan.checkpoint.meta["global_step"], plan.checkpoint.meta["reason"]) == (23, "signal")
    assert plan.checkpoint.meta["batch_in_epoch"] not in (0, 11)  # mid-epoch
    result = kiln.resume(run_dir, quiet=True)
    assert result.status == "completed" and result.summary.global_step == 45

    assert metrics(run_dir) == metrics(straight)
    assert any(scope == "step" and "val_loss" in m for scope, _, m in metrics(straight))
    a, b = kiln.load_model(straight).state_dict(), kiln.load_model(run_dir).state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ca = CheckpointManager(straight / "checkpoints", 1, 1, "min").load_latest()
    cb = CheckpointManager(run_dir / "checkpoints", 1, 1, "min").load_latest()
    assert ca is not None and cb is not None
    for index, slots in ca.optimizer["state"].items():
        for name, value in slots.items():
            assert torch.equal(value, cb.optimizer["state"][index][name]), (index, name)
    # samples written after the checkpoint were dropped and written again, identically
    samples = (run_dir / "logs/samples.jsonl").read_text()
    assert samples == (straight / "logs/samples.jsonl").read_text()
    assert [int(line.split(",")[0].split(":")[1]) for line in samples.splitlines()] == [10, 20, 30, 40]
    finished = plan_resume(run_dir)
    assert finished.checkpoint is None and "already finished all 45 steps" in str(finished.finished_message)


def test_samples_after_the_checkpoint_are_dropped_on_resume(tmp_path: Path) -> None:
    """After a hard kill, samples.jsonl may hold steps past the checkpoint; resuming drops them."""
    from kiln.train.callbacks.step_eval import drop_after

    path = tmp_path / "samples.jsonl"
    path.write_text("".join(f'{{"step": {s}, "prompt": "a", "text": "ab"}}\n' for s in (10, 20, 30)))
    drop_after(path, 20)
    assert [line[:11] for line in path.read_text().splitlines()] == ['{"step": 10', '{"step": 20']
    drop_after(tmp_path / "missing.jsonl", 5)  # nothing written yet: nothing to do
