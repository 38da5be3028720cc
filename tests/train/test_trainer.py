"""The Trainer end to end on tiny real runs: run directory, logs, determinism, callbacks, models."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import kiln
from kiln.testing import tiny_config
from kiln.tracking import read_events
from kiln.train import Callback, Trainer, TrainState


def fit(tmp_path: Path, *overrides: str, **kwargs: Any) -> kiln.FitResult:
    return Trainer(tiny_config(tmp_path / "runs", *overrides, **kwargs), quiet=True).fit()


def test_run_directory_holds_every_file(tmp_path: Path) -> None:
    result = fit(tmp_path, "training.epochs=3", backends=("jsonl", "csv", "tensorboard"))
    root = result.run_dir
    assert root.parent == tmp_path / "runs" and root.name.startswith("tiny_")
    for name in ("config.yaml", "environment.json", "summary.json", "logs/events.jsonl",
                 "logs/training_log.csv", "models/model.safetensors", "models/model.json"):
        assert (root / name).is_file(), name
    assert list((root / "logs/tensorboard").glob("events.out.tfevents.*"))
    config_text = (root / "config.yaml").read_text()
    assert config_text.startswith("# config_hash: sha256:")
    assert kiln.load_config(root / "config.yaml").training.epochs == 3

    env = json.loads((root / "environment.json").read_text())
    assert {"git", "python", "torch", "packages", "platform", "hostname", "command", "seed", "hardware"} <= set(env)
    assert env["packages"]["torch"].startswith("2.") and env["seed"] == 42
    assert env["git"].get("commit")  # the test suite runs inside kiln's repository
    assert env["hardware"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(env["hardware"]["cpu_isa"], list) and env["hardware"]["cpu"]

    summary = json.loads((root / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_trained"] == 3
    assert summary["test"]["test_accuracy"] > 0.5
    assert summary["parameters"] == 64 * 16 + 16 + 16 * 10 + 10
    assert summary["config_hash"] in config_text

    meta = json.loads((root / "models/model.json").read_text())
    assert meta["input_signature"] == {"shape": [None, 1, 8, 8], "dtype": "float32"}
    assert meta["class_names"] == [str(i) for i in range(10)]


def test_csv_has_one_row_per_epoch_and_events_are_structured(tmp_path: Path) -> None:
    result = fit(tmp_path, "training.epochs=4", "tracking.backends=[csv]")
    with (result.run_dir / "logs/training_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_time", "samples_per_sec"} <= set(rows[0])
    events = read_events(result.run_dir / "logs/events.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "params" and kinds[-1] == "closed"
    summary = json.loads((result.run_dir / "summary.json").read_text())  # what run.keep_freed_memory did:
    assert summary["glibc_malloc"].startswith(("kept:", "not glibc", "tuned by the environment", "another"))
    epochs = [e for e in events if e["event"] == "metrics" and e["scope"] == "epoch"]
    assert [e["metrics"]["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert float(rows[-1]["val_loss"]) == pytest.approx(epochs[-1]["metrics"]["val_loss"])


def test_tensorboard_files_read_back_with_tensorboards_reader(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = fit(tmp_path, "training.epochs=3", "tracking.log_every_n_steps=5", backends=("tensorboard",))
    acc = EventAccumulator(str(result.run_dir / "logs/tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "step/train_loss", "test/test_accuracy"} <= set(tags)
    val_loss = acc.Scalars("val_loss")
    assert [e.step for e in val_loss] == [21, 42, 63]  # the optimizer step at each epoch end
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert val_loss[-1].value == pytest.approx(summary["final"]["val_loss"], rel=1e-6)


def test_same_seed_deterministic_runs_give_identical_metrics(tmp_path: Path) -> None:
    first = fit(tmp_path / "a", "training.epochs=3", "model.dropout=0.2")
    second = fit(tmp_path / "b", "training.epochs=3", "model.dropout=0.2")
    drop_time = lambda m: {k: v for k, v in m.items() if k not in ("epoch_time", "samples_per_sec")}  # noqa: E731
    assert [drop_time(h) for h in first.summary and _history(first)] == [drop_time(h) for h in _history(second)]
    assert first.test_metrics == second.test_metrics
    third = fit(tmp_path / "c", "training.epochs=3", "model.dropout=0.2", "run.seed=7")
    assert third.test_metrics != first.test_metrics


def _history(result: kiln.FitResult) -> list[dict[str, float]]:
    events = read_events(result.run_dir / "logs/events.jsonl")
    return [e["metrics"] for e in events if e["event"] == "metrics" and e["scope"] == "epoch"]


class ScriptedValLoss(Callback):
    """Replaces val_loss with a scripted sequence and snapshots the weights of every epoch."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_validation_end(self, state: TrainState) -> None:
        state.metrics["val_loss"] = self.values[state.epoch]
        self.weights.append({k: v.clone() for k, v in state.model.state_dict().items()})


def test_early_stopping_stops_at_the_right_epoch_and_restores_best(tmp_path: Path) -> None:
    script = ScriptedValLoss([1.0, 0.5, 0.6, 0.4, 0.45, 0.41, 0.9, 0.3, 0.2, 0.1])
    cfg = tiny_config(tmp_path, "training.epochs=10", "training.early_stopping.patience=3",
                      "training.early_stopping.min_delta=0.02")
    result = Trainer(cfg, callbacks=[script], quiet=True).fit()
    # best 0.4 at epoch 4; 0.45, 0.41 (not better by min_delta), 0.9 -> stop after epoch 7
    assert result.status == "stopped_early"
    assert result.summary.epochs_trained == 7
    assert result.summary.restored_best_epoch == 4
    restored = kiln.load_model(result.run_dir).state_dict()
    for key, value in script.weights[3].items():
        assert torch.equal(restored[key], value), key
    assert not torch.equal(restored["1.weight"], script.weights[-1]["1.weight"])


def test_load_model_reproduces_logits(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(tmp_path), quiet=True)
    result = trainer.fit()
    assert trainer.components is not None
    trained = trainer.components.model.eval()
    inputs = torch.randn(5, 1, 8, 8)
    loaded = kiln.load_model(result.run_dir)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), trained(inputs))
    assert not loaded.training


def test_user_model_and_dataset_by_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg/__init__.py").write_text("")
    (tmp_path / "userpkg/stuff.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from torch.utils.data import TensorDataset
        from kiln.data import DataBundle, DataSpec

        class TinyNet(nn.Module):
            def __init__(self, spec, width=8):
                super().__init__()
                self.net = nn.Sequential(nn.Flatten(), nn.Linear(4, width), nn.ReLU(), nn.Linear(width, spec.output_size))
            def forward(self, x):
                return self.net(x)

        def xor_data(n=256):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(n, 4, generator=g)
            y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long() + 2 * (x[:, 2] > 0).long()
            ds = lambda a, b: TensorDataset(x[a:b], y[a:b])
            spec = DataSpec(name="xor", task="classification", input_shape=(4,), num_classes=4,
                            class_names=("a", "b", "c", "d"))
            return DataBundle(train=ds(0, 192), val=ds(192, 224), test=ds(224, n), spec=spec)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = fit(tmp_path, "model.target=userpkg.stuff:TinyNet", "model.options={width: 12}",
                 "data.target=userpkg.stuff:xor_data", "data.options={n: 256}", "training.epochs=2")
    assert result.status == "completed"
    meta = json.loads((result.run_dir / "models/model.json").read_text())
    assert meta["data_spec"]["name"] == "xor" and meta["model"]["target"] == "userpkg.stuff:TinyNet"
    model = kiln.load_model(result.run_dir)
    assert model.net[1].out_features == 12  # type: ignore[index,union-attr]


def test_model_and_data_as_objects(tmp_path: Path) -> None:
    from kiln.data.build import build_data

    cfg = tiny_config(tmp_path)
    data = build_data(cfg.data, cfg.run.seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    result = Trainer(cfg, model=net, data=data, quiet=True).fit()
    assert result.status == "completed"
    with pytest.raises(kiln.KilnError, match="passed to kiln as an object"):
        kiln.load_model(result.run_dir)
    rebuilt = kiln.load_model(result.run_dir, model=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
    assert torch.equal(rebuilt[1].weight, net[1].weight)  # type: ignore[index]


def test_nan_guard_stops_and_keeps_last_good_weights(tmp_path: Path) -> None:
    """The losses are read every tracking.log_every_n_steps steps (5 here): the run stops at the
    first check after the poisoned batch, with the weights of the check before it."""
    from torch.utils.data import TensorDataset

    from kiln.data.build import build_data

    cfg = tiny_config(tmp_path, "training.epochs=3", "tracking.log_every_n_steps=5")
    data = build_data(cfg.data, cfg.run.seed)
    inputs, targets = data.train.tensors  # type: ignore[attr-defined]
    inputs = inputs.clone()
    inputs[500] = float("nan")  # one poisoned sample, met somewhere in the first epoch
    data.train = TensorDataset(inputs, targets)

    class Witness(Callback):
        """Reads every loss (a test may sync) and keeps the weights at each check point before
        the first non-finite one."""

        def __init__(self) -> None:
            self.first_bad: int | None = None
            self.batches = 0

        def on_batch_end(self, state: TrainState) -> None:
            self.batches += 1
            assert state.batch_loss is not None
            if self.first_bad is None and not torch.isfinite(state.batch_loss):
                self.first_bad = self.batches
            if self.first_bad is None and state.global_step % 5 == 0:
                self.weights = {k: v.clone() for k, v in state.model.state_dict().items()}
                self.step = state.global_step

    witness = Witness()
    result = Trainer(cfg, data=data, callbacks=[witness], quiet=True).fit()
    assert result.status == "failed" and witness.first_bad is not None
    assert (result.summary.stop_reason or "").startswith(
        f"non-finite loss (NaN or Inf) at epoch 1, batch {witness.first_bad}; the weights of step {witness.step}"
    )
    assert witness.batches - witness.first_bad < 5  # stopped within log_every_n_steps steps
    assert result.summary.epochs_trained == 1 and result.summary.global_step == witness.step
    saved = kiln.load_model(result.run_dir).state_dict()
    for key, value in witness.weights.items():
        assert torch.equal(saved[key], value), key
        assert torch.isfinite(saved[key]).all()


def test_every_scheduler_trains(tmp_path: Path) -> None:
    """Each schedule runs to the end; what the loss, precision, L2, clipping and optimizer options
    do is pinned exactly in test_options.py."""
    for i, overrides in enumerate([
        ("training.scheduler.name=reduce_on_plateau", "training.scheduler.patience=0", "training.scheduler.factor=0.5"),
        ("training.scheduler.name=cosine",),
        ("training.scheduler.name=step", "training.scheduler.step_size=1", "training.scheduler.gamma=0.5"),
        ("training.scheduler.name=warmup_cosine", "training.scheduler.warmup_steps=5"),
    ]):
        result = fit(tmp_path / str(i), *overrides)
        assert result.status == "completed", overrides
        assert result.test_metrics["test_accuracy"] > 0.3, overrides


def test_step_scheduler_halves_lr_each_epoch(tmp_path: Path) -> None:
    result = fit(tmp_path, "training.epochs=3", "training.scheduler.name=step", "training.scheduler.step_size=1", "training.scheduler.gamma=0.5")
    assert [h["lr"] for h in _history(result)] == pytest.approx([0.01, 0.005, 0.0025])


def test_grad_accum_counts_optimizer_steps(tmp_path: Path) -> None:
    """Every full window of 4 batches is one step, and so is the epoch's trailing partial window."""
    from kiln.data.build import build_data

    cfg = tiny_config(tmp_path / "runs", "training.epochs=1", "training.grad_accum=4", "training.batch_size=16")
    batches = -(-len(build_data(cfg.data, cfg.run.seed).train) // 16)  # type: ignore[arg-type]
    assert (batches, batches % 4) == (81, 1)  # 20 full windows and one batch left over
    result = Trainer(cfg, quiet=True).fit()
    assert result.summary.global_step == 21


def test_loss_that_does_not_fit_the_task_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(kiln.ConfigError, match="does not fit the classification task"):
        fit(tmp_path, "training.loss.name=mse")


def test_monitor_of_unknown_metric_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(kiln.ConfigError, match=r"val_acc.*is not measured\. Available: .*val_accuracy"):
        fit(tmp_path, "training.early_stopping.monitor=val_acc")
