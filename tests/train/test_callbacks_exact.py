"""Callbacks one hook at a time on a real TrainState: exact decisions, messages and records."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn

from kiln import __version__
from kiln.checkpoint import CheckpointManager
from kiln.config import load_config
from kiln.config.schema import CheckpointConfig, EarlyStoppingConfig, SchedulerConfig
from kiln.data.spec import DataSpec
from kiln.errors import ConfigError
from kiln.tracking.jsonl import JsonlTracker, read_events
from kiln.tracking.multi import MultiTracker
from kiln.train.callbacks.checkpointing import Checkpointing
from kiln.train.callbacks.early_stopping import EarlyStopping
from kiln.train.callbacks.lr_schedule import LRSchedule
from kiln.train.callbacks.monitor import Monitor
from kiln.train.callbacks.nan_guard import NanGuard
from kiln.train.callbacks.progress import ProgressBar
from kiln.train.callbacks.step_eval import _sample_step, drop_after
from kiln.train.callbacks.tracking import TrackingCallback
from kiln.train.state import TrainState

SPEC = DataSpec(name="t", task="classification", input_shape=(2,), num_classes=2)


def _state(tmp_path: Path, lr: float = 0.5) -> TrainState:
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return TrainState(load_config(None, ["training.epochs=4"]), model, opt, SPEC, tmp_path, steps_per_epoch=5)


# -- Monitor ------------------------------------------------------------------------------------


def test_monitor_min_with_delta() -> None:
    m = Monitor("val_loss", "min", min_delta=0.1)
    assert (m.metric, m.mode, m.min_delta, m.best, m.best_epoch, m.wait) == ("val_loss", "min", 0.1, None, None, 0)
    assert m.update({"val_loss": 1.0}, epoch=0) is True
    assert m.update({"val_loss": 0.9}, epoch=1) is False  # exactly best - delta: not enough
    assert (m.best, m.best_epoch, m.wait) == (1.0, 0, 1)
    assert m.update({"val_loss": 0.85}, epoch=2) is True
    assert (m.best, m.best_epoch, m.wait) == (0.85, 2, 0)
    assert m.update({"val_loss": float("nan")}, epoch=3) is False
    assert m.wait == 1


def test_monitor_max_with_delta() -> None:
    m = Monitor("val_accuracy", "max", min_delta=0.5)
    assert m.is_improvement(float("nan")) is False
    assert m.update({"val_accuracy": 1}, epoch=4) is True
    assert m.best == 1.0 and isinstance(m.best, float)
    assert m.update({"val_accuracy": 1.5}) is False
    assert m.update({"val_accuracy": 1.6}, epoch=6) is True
    assert (m.best, m.best_epoch, m.wait) == (1.6, 6, 0)
    assert m.is_improvement(1.0) is False


def test_monitor_default_delta_is_zero() -> None:
    m = Monitor("x", "min")
    m.update({"x": 1.0})
    assert m.is_improvement(1.0) is False and m.is_improvement(0.999) is True


def test_monitor_names_the_metrics_that_exist() -> None:
    with pytest.raises(ConfigError) as err:
        Monitor("val_acc", "max").update({"val_loss": 1.0, "train_loss": 2.0}, owner="training.early_stopping")
    assert str(err.value) == (
        "training.early_stopping.monitor: metric 'val_acc' is not measured. Available: train_loss, val_loss"
    )
    with pytest.raises(ConfigError, match=r"^monitor\.monitor: metric 'x'"):
        Monitor("x", "max").update({})


def test_monitor_state_round_trip() -> None:
    m = Monitor("x", "min")
    m.update({"x": 2.0}, epoch=3)
    m.update({"x": 5.0}, epoch=4)
    assert m.state_dict() == {"best": 2.0, "best_epoch": 3, "wait": 1}
    n = Monitor("x", "min")
    n.load_state_dict(m.state_dict())
    assert (n.best, n.best_epoch, n.wait) == (2.0, 3, 1)


# -- EarlyStopping ------------------------------------------------------------------------------


def _epoch(cb: EarlyStopping, state: TrainState, epoch: int, value: float) -> None:
    state.epoch, state.metrics = epoch, {"val_loss": value}
    cb.on_epoch_end(state)


def test_early_stopping_stops_after_patience_and_restores_the_best(tmp_path: Path) -> None:
    state = _state(tmp_path)
    cb = EarlyStopping(EarlyStoppingConfig(monitor="val_loss", patience=2, min_delta=0.0))
    assert cb.best_epoch is None and cb.stopped_epoch is None
    best = {k: v.clone() for k, v in state.model.state_dict().items()}
    _epoch(cb, state, 0, 1.0)
    assert cb.best_weights is not None
    assert all(torch.equal(cb.best_weights[k], best[k]) for k in best)
    with torch.no_grad():
        state.model.weight.add_(1.0)  # the live model moves on; the saved copy must not
    assert torch.equal(cb.best_weights["weight"], best["weight"])
    _epoch(cb, state, 1, 1.5)
    assert not state.stop_requested
    _epoch(cb, state, 2, 1.2)
    assert state.stop_requested and cb.stopped_epoch == 2
    assert state.stop_reason == (
        "early stopping: val_loss did not improve for 2 epochs (best 1 at epoch 1)"
    )
    cb.on_fit_end(state)
    assert torch.equal(state.model.weight, best["weight"])
    assert state.extras == {"restored_best_epoch": 1, "best_epoch": 1, "best_val_loss": 1.0}


def test_early_stopping_without_restore(tmp_path: Path) -> None:
    state = _state(tmp_path)
    cb = EarlyStopping(EarlyStoppingConfig(patience=1, restore_best_weights=False))
    _epoch(cb, state, 0, 0.123456789)
    assert cb.best_weights is None
    with torch.no_grad():
        state.model.weight.add_(1.0)
    moved = state.model.weight.clone()
    _epoch(cb, state, 1, 0.5)
    assert state.stop_reason == "early stopping: val_loss did not improve for 1 epochs (best 0.123457 at epoch 1)"
    cb.on_fit_end(state)
    assert torch.equal(state.model.weight, moved)
    assert state.extras == {"best_epoch": 1, "best_val_loss": 0.123456789}


def test_early_stopping_state_round_trip(tmp_path: Path) -> None:
    state = _state(tmp_path)
    cb = EarlyStopping(EarlyStoppingConfig(patience=1))
    _epoch(cb, state, 0, 1.0)
    _epoch(cb, state, 1, 2.0)
    saved = cb.state_dict()
    assert saved["monitor"] == {"best": 1.0, "best_epoch": 0, "wait": 1}
    assert saved["stopped_epoch"] == 1 and set(saved["best_weights"]) == {"weight", "bias"}
    other = EarlyStopping(EarlyStoppingConfig(patience=1))
    other.load_state_dict(saved)
    assert other.state_dict()["monitor"] == saved["monitor"]
    assert other.stopped_epoch == 1 and other.best_weights is saved["best_weights"]
    assert other.best_epoch == 1


# -- LRSchedule ---------------------------------------------------------------------------------


def _lr(state: TrainState) -> float:
    return float(state.optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("name", ["cosine", "warmup_cosine"])
def test_per_step_schedules_step_only_after_an_optimizer_step(tmp_path: Path, name: str) -> None:
    state = _state(tmp_path, lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(state.optimizer, step_size=1, gamma=0.5)
    state.optimizer.step()  # no gradients: changes nothing, but orders the calls as torch expects
    cb = LRSchedule(sched, SchedulerConfig(name=name))
    assert cb.per_step is True
    state.optimizer_stepped = False
    cb.on_batch_end(state)
    assert _lr(state) == 1.0
    state.optimizer_stepped = True
    cb.on_batch_end(state)
    assert _lr(state) == 0.5
    cb.on_epoch_end(state)  # not again at the epoch's end
    assert _lr(state) == 0.5


def test_epoch_schedules_step_at_the_epoch_end_only(tmp_path: Path) -> None:
    state = _state(tmp_path, lr=1.0)
    cb = LRSchedule(torch.optim.lr_scheduler.StepLR(state.optimizer, step_size=1, gamma=0.5),
                    SchedulerConfig(name="step"))
    state.optimizer.step()
    assert cb.per_step is False
    state.optimizer_stepped = True
    cb.on_batch_end(state)
    assert _lr(state) == 1.0
    cb.on_epoch_end(state)
    assert _lr(state) == 0.5
    saved = cb.state_dict()
    assert saved == {"scheduler": cb.scheduler.state_dict()}
    cb.on_epoch_end(state)
    cb.load_state_dict(saved)
    assert cb.scheduler.last_epoch == 1


def test_plateau_steps_on_the_monitored_metric(tmp_path: Path) -> None:
    state = _state(tmp_path, lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(state.optimizer, mode="max", factor=0.5, patience=0)
    cb = LRSchedule(sched, SchedulerConfig(name="reduce_on_plateau", monitor="val_accuracy", mode="max"))
    state.metrics = {"val_accuracy": 0.5, "val_loss": 9.0}
    cb.on_epoch_end(state)
    assert _lr(state) == 1.0
    state.metrics = {"val_accuracy": 0.75, "val_loss": 1.0}  # better accuracy: no cut
    cb.on_epoch_end(state)
    assert _lr(state) == 1.0
    state.metrics = {"val_accuracy": 0.7, "val_loss": 0.1}
    cb.on_epoch_end(state)
    assert _lr(state) == 0.5
    state.metrics = {"val_loss": 1.0}
    with pytest.raises(ConfigError) as err:
        cb.on_epoch_end(state)
    assert str(err.value) == (
        "training.scheduler.monitor: metric 'val_accuracy' is not measured. Available: val_loss"
    )


# -- NanGuard -----------------------------------------------------------------------------------


def test_nan_guard(tmp_path: Path) -> None:
    """Losses are read every 2 steps only; a NaN among them puts back the weights of the last
    good check with its step count, and fails the run naming the first bad batch."""
    state = _state(tmp_path)
    guard = NanGuard(every=2)
    guard.on_fit_start(state)  # the weights of step 0 are kept
    start = {k: v.clone() for k, v in state.model.state_dict().items()}

    def batch(loss: float) -> None:
        with torch.no_grad():
            state.model.weight.add_(1.0)  # the step changes the weights
        state.batch_in_epoch += 1
        state.global_step += 1
        state.optimizer_stepped = True
        state.batch_loss = torch.tensor(loss)
        guard.on_batch_end(state)

    batch(1.0)
    batch(0.5)  # step 2: checked, all finite: these weights are kept
    assert not state.stop_requested and not guard.pending
    kept = {k: v.clone() for k, v in state.model.state_dict().items()}
    assert not torch.equal(kept["weight"], start["weight"])
    batch(float("nan"))  # batch 3: not read yet, training goes on
    assert not state.stop_requested and len(guard.pending) == 1
    batch(float("inf"))  # step 4: checked
    assert state.failed is True and state.stop_requested
    assert state.global_step == 2
    assert all(torch.equal(state.model.state_dict()[k], v) for k, v in kept.items())
    assert state.stop_reason == (
        "non-finite loss (NaN or Inf) at epoch 1, batch 3; the weights of step 2, the last checked "
        "good, were kept. Try a lower training.lr, training.grad_clip, or check the data"
    )


def test_nan_guard_checks_before_validation_and_checkpoints(tmp_path: Path) -> None:
    state = _state(tmp_path)
    guard = NanGuard(every=1000)
    guard.on_fit_start(state)
    state.batch_in_epoch, state.global_step, state.optimizer_stepped = 1, 1, True
    state.batch_loss = torch.tensor(float("nan"))
    guard.on_batch_end(state)
    assert not state.stop_requested  # step 1 is no check point
    guard.on_checkpoint(state)
    assert state.failed and state.global_step == 0


# -- Checkpointing ------------------------------------------------------------------------------


def _checkpointing(tmp_path: Path, **cfg: object) -> tuple[Checkpointing, CheckpointManager]:
    manager = CheckpointManager(tmp_path / "ckpt", keep_best_n=10, keep_last_n=10, mode="min")
    cb = Checkpointing(CheckpointConfig(**cfg), manager, lambda s: {"counters": s.counters()},
                       lambda: {"config_hash": "abc"})
    return cb, manager


def test_every_n_steps_requests_on_multiples_after_a_step(tmp_path: Path) -> None:
    state = _state(tmp_path)
    cb, _ = _checkpointing(tmp_path, every_n_steps=3)
    asked = []
    for step, stepped in [(1, True), (3, False), (3, True), (4, True), (6, True)]:
        state.global_step, state.optimizer_stepped, state.checkpoint_reason = step, stepped, None
        cb.on_batch_end(state)
        asked.append(state.checkpoint_requested)
    assert asked == [False, False, True, False, True]
    off, _ = _checkpointing(tmp_path / "off", every_n_steps=None)
    state.global_step, state.optimizer_stepped, state.checkpoint_reason = 3, True, None
    off.on_batch_end(state)
    assert state.checkpoint_requested is False


def test_every_n_epochs_counts_epochs_from_one(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.metrics = {"val_loss": 1.0}
    cb, _ = _checkpointing(tmp_path, every_n_epochs=2)
    asked = []
    for epoch in range(4):
        state.epoch, state.checkpoint_reason = epoch, None
        cb.on_epoch_end(state)
        asked.append(state.checkpoint_requested)
    assert asked == [False, True, False, True]
    assert state.checkpoint_reason == "periodic"  # recorded in the checkpoint's meta.json
    never, _ = _checkpointing(tmp_path / "never", every_n_epochs=None)
    state.epoch, state.checkpoint_reason = 1, None
    never.on_epoch_end(state)
    assert state.checkpoint_requested is False


def test_epoch_end_names_the_metrics_that_exist(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.metrics = {"train_loss": 1.0}
    cb, _ = _checkpointing(tmp_path)
    with pytest.raises(ConfigError) as err:
        cb.on_epoch_end(state)
    assert str(err.value) == "checkpoint.monitor: metric 'val_loss' is not measured. Available: train_loss"


def test_save_at_an_epoch_boundary_records_the_monitored_value(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.epoch, state.global_step, state.batch_in_epoch = 1, 10, 0
    state.history = [{"val_loss": 2.0}, {"val_loss": 0.5, "val_accuracy": 0.9}]
    state.request_checkpoint("signal")
    cb, manager = _checkpointing(tmp_path)
    cb.on_checkpoint(state)
    assert state.checkpoint_reason == "signal"  # the loop clears it once every hook has run
    (info,) = manager.committed()
    assert state.last_checkpoint == info.path
    assert state.extras["last_checkpoint"] == str(info.path)
    assert info.path.name == "epoch0001-step00000010"
    meta = info.meta
    assert {k: meta[k] for k in (
        "epoch", "global_step", "batch_in_epoch", "reason", "metrics", "monitor", "monitor_value",
        "kiln_version", "config_hash",
    )} == {
        "epoch": 1, "global_step": 10, "batch_in_epoch": 0, "reason": "signal",
        "metrics": {"val_loss": 0.5, "val_accuracy": 0.9}, "monitor": "val_loss", "monitor_value": 0.5,
        "kiln_version": __version__, "config_hash": "abc",
    }
    loaded = manager.load(info.path)
    assert loaded.trainer["counters"]["global_step"] == 10
    assert torch.equal(loaded.model["weight"], state.model.weight.detach())
    assert cb.last_saved == (10, 1, 0)
    cb.save(state, "again")  # the same position is not saved twice
    assert len(manager.committed()) == 1


def test_save_mid_epoch_has_no_monitored_value(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.epoch, state.global_step, state.batch_in_epoch = 2, 13, 3
    state.history = [{"val_loss": 0.5}]
    cb, manager = _checkpointing(tmp_path)
    cb.on_checkpoint(state)
    (info,) = manager.committed()
    assert info.path.name == "epoch0002-step00000013-batch00003"
    assert (info.meta["reason"], info.meta["monitor_value"], info.meta["metrics"]) == ("periodic", None, {"val_loss": 0.5})
    state.global_step, state.batch_in_epoch = 14, 4
    cb.save(state, "end")
    assert len(manager.committed()) == 2


def test_save_before_any_epoch_and_with_a_nan_metric(tmp_path: Path) -> None:
    state = _state(tmp_path)
    cb, manager = _checkpointing(tmp_path)
    cb.save(state, "start")
    assert manager.committed()[0].meta["metrics"] == {}
    assert manager.committed()[0].meta["monitor_value"] is None
    state.global_step, state.epoch, state.history = 5, 1, [{"val_loss": math.nan}]
    cb.save(state, "end")
    assert manager.committed()[1].meta["monitor_value"] is None


# -- TrackingCallback ---------------------------------------------------------------------------


def _tracked(tmp_path: Path, every: int = 2) -> tuple[TrackingCallback, MultiTracker, Path]:
    path = tmp_path / "events.jsonl"
    tracker = MultiTracker(JsonlTracker(path), {})
    return TrackingCallback(tracker, every, {"training": {"lr": 0.5}}), tracker, path


def _events(path: Path) -> list[dict[str, object]]:
    out = read_events(path)
    for rec in out:
        rec.pop("time")
    return out


def test_tracking_callback_records(tmp_path: Path) -> None:
    cb, tracker, path = _tracked(tmp_path)
    state = _state(tmp_path)
    state.epoch, state.global_step = 1, 6
    cb.on_fit_start(state)
    state.batch_loss = torch.tensor(0.25)
    for step, stepped in [(7, True), (8, False), (8, True)]:
        state.global_step, state.optimizer_stepped = step, stepped
        cb.on_batch_end(state)
    state.extras["grad_norm"] = torch.tensor(3.5)
    state.global_step = 10
    cb.on_batch_end(state)
    state.batch_loss = None
    state.global_step = 12
    cb.on_batch_end(state)
    state.metrics = {"val_loss": 0.125}
    cb.on_epoch_end(state)
    state.status, state.stop_reason = "stopped_early", "because"
    cb.on_fit_end(state)
    state.error = ValueError("boom")
    cb.on_exception(state)
    tracker.jsonl.close("completed")
    assert _events(path) == [
        {"event": "params", "params": {"training.lr": 0.5}},
        {"event": "fit_start", "epoch": 1, "global_step": 6, "batch_in_epoch": 0, "samples_seen": 0,
         "history": None},
        {"event": "metrics", "scope": "step", "step": 8, "metrics": {"train_loss": 0.25, "lr": 0.5}},
        {"event": "metrics", "scope": "step", "step": 10,
         "metrics": {"train_loss": 0.25, "lr": 0.5, "grad_norm": 3.5}},
        {"event": "metrics", "scope": "epoch", "step": 12, "metrics": {"val_loss": 0.125}},
        {"event": "fit_end", "status": "stopped_early", "epochs": 1, "global_step": 12, "stop_reason": "because"},
        {"event": "exception", "type": "ValueError", "message": "boom", "epoch": 2, "global_step": 12},
        {"event": "closed", "status": "completed"},
    ]


# -- ProgressBar --------------------------------------------------------------------------------


def test_progress_bar_shows_loss_and_epoch_metrics(tmp_path: Path) -> None:
    out = io.StringIO()
    bar = ProgressBar(Console(file=out, width=200, force_terminal=False), loss_every=2)
    state = _state(tmp_path)
    state.epoch = 1
    bar.on_fit_start(state)
    assert bar.progress is not None
    bar.on_epoch_start(state)
    task = bar.progress.tasks[0]
    assert (task.total, task.completed, task.fields) == (5, 0, {"epoch": "2/4", "info": ""})
    state.batch_loss = torch.tensor(0.123456)
    state.batch_in_epoch = 1
    bar.on_batch_end(state)
    assert (task.completed, task.fields["info"]) == (1, "")
    state.batch_in_epoch = 2
    bar.on_batch_end(state)
    assert (task.completed, task.fields["info"]) == (2, "loss 0.1235")
    state.metrics = {"train_loss": 0.5, "val_accuracy": 0.25, "lr": 0.1}
    bar.on_epoch_end(state)
    assert (task.completed, task.fields["info"]) == (5, "train_loss 0.5000  val_accuracy 0.2500")
    bar.on_fit_end(state)
    assert bar.progress is None
    bar.on_exception(state)  # stopping twice is harmless
    assert "epoch 2/4" in out.getvalue()


def test_progress_bar_stops_on_exception(tmp_path: Path) -> None:
    bar = ProgressBar(Console(file=io.StringIO()))
    assert bar.loss_every == 20
    bar.on_fit_start(_state(tmp_path))
    bar.on_exception(_state(tmp_path))
    assert bar.progress is None


# -- step evaluation's samples file -------------------------------------------------------------


def test_drop_after_keeps_steps_up_to_and_including(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    drop_after(path, 3)  # no file: nothing to do
    assert not path.exists()
    lines = [json.dumps({"step": s, "text": "x"}) for s in (2, 3, 4)] + ['{"step": 5, "te']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    drop_after(path, 3)
    assert path.read_text(encoding="utf-8") == lines[0] + "\n" + lines[1] + "\n"
    before = path.stat().st_mtime_ns
    drop_after(path, 3)  # nothing to drop: the file is not rewritten
    assert path.stat().st_mtime_ns == before


def test_sample_step() -> None:
    assert _sample_step('{"step": 4}') == 4.0
    assert _sample_step('{"text": "no step"}') == math.inf
    assert _sample_step('{"step": 4') == math.inf
    assert _sample_step("[1]") == math.inf


def test_monitor_epoch_defaults_to_zero() -> None:
    m = Monitor("x", "max")
    m.update({"x": 1.0})
    assert m.best_epoch == 0


def test_early_stopping_uses_min_delta(tmp_path: Path) -> None:
    state = _state(tmp_path)
    cb = EarlyStopping(EarlyStoppingConfig(patience=1, min_delta=0.5))
    assert cb.monitor.min_delta == 0.5
    _epoch(cb, state, 0, 1.0)
    _epoch(cb, state, 1, 0.6)  # better, but by less than min_delta
    assert state.stop_requested


def test_progress_bar_stopped_before_it_started() -> None:
    bar = ProgressBar(Console(file=io.StringIO()))
    assert bar.progress is None and bar.task is None
    bar.on_exception(None)  # type: ignore[arg-type]  # a fit that failed before fit_start
    assert bar.progress is None
