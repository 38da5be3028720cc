"""Exact resume: a run interrupted by a real signal and resumed ends bit for bit like one that was not."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

import kiln
from kiln.checkpoint import CheckpointManager
from kiln.errors import ConfigError, UsageError
from kiln.runs import read_summary
from kiln.testing import tiny_config
from kiln.tracking import read_events
from kiln.train import Callback, Trainer, TrainState
from kiln.train.resume import plan_resume
from kiln.train.trainer import TrainingInterrupted

# Dropout, L2, gradient accumulation, a plateau LR schedule that fires, early stopping counting.
RICH = (
    "training.epochs=7",
    "training.lr=0.05",
    "model.dropout=0.3",
    "training.l2=1e-4",
    "training.grad_accum=2",
    "training.scheduler.name=reduce_on_plateau",
    "training.scheduler.monitor=val_accuracy",
    "training.scheduler.mode=max",
    "training.scheduler.patience=0",
    "training.scheduler.factor=0.5",
    "training.early_stopping.monitor=val_accuracy",
    "training.early_stopping.mode=max",
    "training.early_stopping.patience=4",
    "training.early_stopping.min_delta=0.003",
    "checkpoint.keep_last_n=2",
)
TIMING = ("epoch_time", "samples_per_sec")


class SendSignal(Callback):
    """Sends a real signal to this process at a chosen point of the loop."""

    def __init__(self, epoch: int, batch: int | None, signum: int = signal.SIGTERM) -> None:
        self.epoch, self.batch, self.signum = epoch, batch, signum

    def on_batch_end(self, state: TrainState) -> None:
        if self.batch is not None and (state.epoch, state.batch_in_epoch) == (self.epoch, self.batch):
            os.kill(os.getpid(), self.signum)

    def on_validation_start(self, state: TrainState) -> None:
        if self.batch is None and state.epoch == self.epoch:
            os.kill(os.getpid(), self.signum)


def history(run_dir: Path) -> list[dict[str, Any]]:
    records = read_events(run_dir / "logs/events.jsonl")
    epochs = [r["metrics"] for r in records if r["event"] == "metrics" and r["scope"] == "epoch"]
    return [{k: v for k, v in m.items() if k not in TIMING} for m in epochs]


def last_checkpoint(run_dir: Path) -> kiln.checkpoint.Checkpoint:  # type: ignore[name-defined]
    checkpoint = CheckpointManager(run_dir / "checkpoints", 1, 1, "min").load_latest()
    assert checkpoint is not None
    return checkpoint


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> kiln.FitResult:
    cfg = tiny_config(tmp_path_factory.mktemp("straight"), *RICH, backends=("jsonl", "csv"))
    return Trainer(cfg, quiet=True).fit()


def interrupt_and_resume(tmp_path: Path, sender: SendSignal, overrides: tuple[str, ...] = RICH) -> Path:
    cfg = tiny_config(tmp_path, *overrides, backends=("jsonl", "csv"))
    with pytest.raises(TrainingInterrupted) as err:
        Trainer(cfg, callbacks=[sender], quiet=True).fit()
    expected = {signal.SIGTERM: 143, signal.SIGINT: 130}[signal.Signals(sender.signum)]
    assert err.value.exit_code == expected
    assert "resume with: kiln resume" in str(err.value)
    (run_dir,) = (tmp_path).iterdir()
    # the same facts, structured, for a Python caller that resumes by itself
    assert err.value.run_dir == run_dir
    assert err.value.signal == signal.Signals(sender.signum).name
    assert err.value.checkpoint is not None and err.value.checkpoint.parent == run_dir / "checkpoints"
    assert err.value.global_step > 0
    plan = plan_resume(run_dir)
    assert plan.checkpoint is not None
    assert plan.checkpoint.meta["reason"] in ("signal", "periodic")  # same position: saved once
    result = kiln.resume(err.value.run_dir, quiet=True)  # as a Python caller resumes by itself
    assert result.status in ("completed", "stopped_early")
    return run_dir


@pytest.mark.parametrize(
    ("epoch", "batch", "signum"),
    [
        (1, 10, signal.SIGTERM),  # mid-epoch, at the end of an accumulation window
        (2, 7, signal.SIGINT),  # inside an accumulation window (odd batch, grad_accum=2)
        (2, None, signal.SIGTERM),  # during validation: the epoch completes, resume at a boundary
        (5, 3, signal.SIGTERM),  # after a plateau LR drop and with early stopping's counter running
    ],
    ids=["mid-epoch", "accumulation-window", "epoch-boundary", "after-lr-drop"],
)
def test_interrupted_and_resumed_equals_uninterrupted(
    tmp_path: Path, uninterrupted: kiln.FitResult, epoch: int, batch: int | None, signum: int
) -> None:
    run_dir = interrupt_and_resume(tmp_path, SendSignal(epoch, batch, signum))
    straight = uninterrupted.run_dir
    lrs = [h["lr"] for h in history(straight)]
    assert len(set(lrs)) > 1, "the scenario should include a plateau LR drop"
    assert history(run_dir) == history(straight)

    a, b = kiln.load_model(straight).state_dict(), kiln.load_model(run_dir).state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ca, cb = last_checkpoint(straight), last_checkpoint(run_dir)
    for key in ca.model:
        assert torch.equal(ca.model[key], cb.model[key]), key
    for index, slots in ca.optimizer["state"].items():
        for name, value in slots.items():
            assert torch.equal(value, cb.optimizer["state"][index][name]), (index, name)
    assert ca.trainer["callbacks"]["EarlyStopping"]["monitor"] == cb.trainer["callbacks"]["EarlyStopping"]["monitor"]

    summary_a = read_summary(straight)
    summary_b = read_summary(run_dir)
    assert summary_a.test == summary_b.test
    # every log holds exactly one history
    with (run_dir / "logs/training_log.csv").open() as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [h["epoch"] for h in history(straight)]
    records = read_events(run_dir / "logs/events.jsonl")
    steps = [r["step"] for r in records if r["event"] == "metrics" and r["scope"] == "step"]
    assert steps == sorted(set(steps))


def test_resuming_a_finished_run_does_nothing(tmp_path: Path) -> None:
    result = Trainer(tiny_config(tmp_path), quiet=True).fit()
    plan = plan_resume(result.run_dir)
    assert plan.checkpoint is None and plan.finished_message is not None
    assert "already finished all 2 epochs" in plan.finished_message
    summary_text = (result.run_dir / "summary.json").read_text()
    assert kiln.resume(result.run_dir, quiet=True) == result  # read from summary.json: nothing trained
    assert (result.run_dir / "summary.json").read_text() == summary_text
    with pytest.raises(UsageError, match="a ResumePlan already holds its config"):
        kiln.resume(plan, ["training.epochs=3"])
    longer = plan_resume(result.run_dir, ["training.epochs=3"])  # a safe change: train longer
    assert longer.checkpoint is not None and longer.finished_message is None
    more = kiln.resume(result.run_dir, ["training.epochs=3"], quiet=True)
    assert more.summary.epochs_trained == 3
    assert [h["epoch"] for h in history(result.run_dir)] == [1, 2, 3]


def test_resume_refuses_unsafe_config_change_with_the_differences(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "training.epochs=3")
    with pytest.raises(TrainingInterrupted):
        Trainer(cfg, callbacks=[SendSignal(1, 3)], quiet=True).fit()
    (run_dir,) = tmp_path.iterdir()
    with pytest.raises(ConfigError) as err:
        plan_resume(run_dir, ["training.lr=0.5", "model.dropout=0.1", "training.epochs=4"])
    message = str(err.value)
    assert "training.lr: 0.01 -> 0.5" in message and "model.dropout: 0.0 -> 0.1" in message
    assert "training.epochs" not in message and "--allow-config-change" in message
    plan = plan_resume(run_dir, ["training.lr=0.5"], allow_config_change=True)
    assert plan.config.training.lr == 0.5
    with pytest.raises(ConfigError, match=r"training\.lr: 0\.01 -> 0\.5"):
        kiln.resume(run_dir, ["training.lr=0.5"])  # the library call refuses alike


def test_second_sigint_stops_at_once_without_a_checkpoint(tmp_path: Path) -> None:
    class DoubleSigint(Callback):
        def on_batch_end(self, state: TrainState) -> None:
            if state.batch_in_epoch == 5:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)

    cfg = tiny_config(tmp_path, "training.epochs=3")
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, callbacks=[DoubleSigint()], quiet=True).fit()
    (run_dir,) = tmp_path.iterdir()
    assert read_summary(run_dir).status == "interrupted"
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_step_based_run_extended_mid_epoch_continues_that_epoch(tmp_path: Path) -> None:
    """max_steps can end a run mid-epoch; resuming with more steps must go on with the rest of
    that epoch's batches (same weights as one run of the larger budget), not skip to the next."""
    straight = Trainer(tiny_config(tmp_path / "a", "training.max_steps=30", "model.dropout=0.2"),
                       quiet=True).fit()
    short = Trainer(tiny_config(tmp_path / "b", "training.max_steps=7", "model.dropout=0.2"),
                    quiet=True).fit()
    plan = plan_resume(short.run_dir, ["training.max_steps=30"])
    assert plan.checkpoint is not None
    kiln.resume(short.run_dir, ["training.max_steps=30"], quiet=True)
    a = kiln.load_model(straight.run_dir).state_dict()
    b = kiln.load_model(short.run_dir).state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
