"""Fine-tuning a backbone: model.freeze, training.unfreeze_at_epoch, training.backbone_lr_scale.

Real runs of torchvision's resnet18 and timm's test_resnet on small generated 3x16x16 images (2
classes), through the Trainer, which adds the FineTune callback the config asks for
(``kiln.train.callbacks.fine_tune.fine_tuning``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from typing_extensions import override

import kiln
from kiln.checkpoint.manager import load_checkpoint
from kiln.config.schema import KilnConfig, TrainingConfig
from kiln.data import DataSpec
from kiln.errors import ConfigError
from kiln.models.backbones import backbone_split, head_names, in_head
from kiln.models.build import build_model
from kiln.testing import tiny_config
from kiln.train import Trainer
from kiln.train.callback import Callback
from kiln.train.callbacks.fine_tune import fine_tuning
from kiln.train.optim import build_optimizer
from kiln.train.state import TrainState

IMAGES = (
    "data.name=synthetic", "data.synthetic.input_shape=[3,16,16]", "data.synthetic.num_classes=2",
    "data.synthetic.n_samples=64", "training.batch_size=16",
)


def config(tmp_path: Path, *overrides: str, arch: str = "resnet18", library: str = "torchvision") -> KilnConfig:
    return tiny_config(tmp_path, *IMAGES, f"model.name={library}", f"model.arch={arch}", *overrides)


class Snapshots(Callback):
    """The model's full state (parameters and batch-norm buffers) at the start and after each epoch."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    @override
    def on_fit_start(self, state: TrainState) -> None:
        self.states.append(copy_state(state.model))

    @override
    def on_epoch_end(self, state: TrainState) -> None:
        self.states.append(copy_state(state.model))


def copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], heads: tuple[str, ...], head: bool) -> list[str]:
    """The keys (of the head, or of the backbone) whose values differ."""
    return [k for k in before if in_head(k, heads) == head and not torch.equal(before[k], after[k])]


def fit(cfg: KilnConfig, *callbacks: Callback) -> Trainer:
    trainer = Trainer(cfg, callbacks=list(callbacks), quiet=True)
    assert trainer.fit().status == "completed"
    return trainer


def test_a_frozen_backbone_and_its_batch_norm_statistics_stay_bit_identical_while_the_head_trains(tmp_path: Path) -> None:
    snapshots = Snapshots()
    trainer = fit(config(tmp_path, "model.freeze=backbone", "training.epochs=1"), snapshots)
    model = trainer.components.model  # type: ignore[union-attr]
    heads = head_names(model)
    assert heads == ("fc",)
    before, after = snapshots.states
    assert changed(before, after, heads, head=False) == []  # weights, running_mean/var, num_batches_tracked
    assert sorted(changed(before, after, heads, head=True)) == ["fc.bias", "fc.weight"]
    assert any(k.endswith("running_mean") for k in before)  # there were statistics to keep


def test_unfreeze_at_epoch_trains_the_backbone_from_that_epoch(tmp_path: Path) -> None:
    snapshots = Snapshots()
    trainer = fit(config(tmp_path, "model.freeze=backbone", "training.unfreeze_at_epoch=1", "training.epochs=2"), snapshots)
    heads = head_names(trainer.components.model)  # type: ignore[union-attr]
    assert heads is not None
    start, epoch1, epoch2 = snapshots.states
    assert changed(start, epoch1, heads, head=False) == []
    moved = changed(epoch1, epoch2, heads, head=False)
    assert "conv1.weight" in moved and "bn1.running_mean" in moved and "layer4.1.conv2.weight" in moved
    assert all(p.requires_grad for p in trainer.components.model.parameters())  # type: ignore[union-attr]


def test_a_timm_model_freezes_the_same_way(tmp_path: Path) -> None:
    snapshots = Snapshots()
    fit(config(tmp_path, "model.freeze=backbone", "training.epochs=1", library="timm", arch="test_resnet"), snapshots)
    before, after = snapshots.states
    assert changed(before, after, ("fc",), head=False) == []
    assert changed(before, after, ("fc",), head=True) == ["fc.weight", "fc.bias"]


def test_backbone_lr_scale_gives_the_backbone_its_own_learning_rate_through_the_schedule(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, "training.backbone_lr_scale=0.1", "training.lr=0.02", "training.optimizer=sgd",
        "training.scheduler.name=step", "training.scheduler.step_size=1", "training.scheduler.gamma=0.5",
        "training.epochs=2",
    )
    trainer = fit(cfg)
    optimizer = trainer.components.optimizer  # type: ignore[union-attr]
    split = backbone_split(trainer.components.model)  # type: ignore[union-attr]
    assert split is not None
    backbone, head = split
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert [g["name"] for g in optimizer.param_groups] == ["head", "backbone"]  # the logged lr is the head's
    assert [id(p) for p in groups["head"]["params"]] == [id(p) for p in head]
    assert [id(p) for p in groups["backbone"]["params"]] == [id(p) for p in backbone]
    # the step schedule halved each group twice: 0.02 -> 0.005 and 0.002 -> 0.0005
    assert groups["head"]["lr"] == pytest.approx(0.005) and groups["backbone"]["lr"] == pytest.approx(0.0005)
    assert trainer.state is not None  # the lr each epoch trained with, logged: the head's
    assert [h["lr"] for h in trainer.state.history] == pytest.approx([0.02, 0.01])


def test_frozen_parameters_belong_to_the_optimizer_and_other_models_keep_one_group(tmp_path: Path) -> None:
    cfg = config(tmp_path, "model.freeze=backbone")
    model = build_model(cfg.model, DataSpec("x", "classification", (3, 16, 16), 2))
    optimizer = build_optimizer(model, cfg.training)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    assert not any(p.requires_grad for p in optimizer.param_groups[1]["params"])
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 2))
    assert len(build_optimizer(mlp, TrainingConfig()).param_groups) == 1
    with pytest.raises(ConfigError, match="backbone_lr_scale needs a model with a backbone"):
        build_optimizer(mlp, TrainingConfig(backbone_lr_scale=0.1))


def test_the_config_refuses_fine_tuning_knobs_without_a_backbone(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unfreeze_at_epoch unfreezes a frozen backbone"):
        config(tmp_path, "training.unfreeze_at_epoch=1")  # model.freeze is none
    with pytest.raises(ConfigError, match="model 'mlp' has no backbone"):
        tiny_config(tmp_path, "training.backbone_lr_scale=0.1")
    with pytest.raises(ConfigError, match="several processes"):
        fine_tuning(config(tmp_path, "model.freeze=backbone", "training.unfreeze_at_epoch=1"), distributed=True)


def test_a_resume_across_the_unfreeze_epoch_ends_bit_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    """Stopped (max_steps) two steps after the backbone unfroze, resumed to the end."""
    knobs = ("model.freeze=backbone", "training.unfreeze_at_epoch=1", "checkpoint.keep_last_n=5")
    straight = fit(config(tmp_path / "a", *knobs, "training.epochs=2", library="timm", arch="test_resnet"))
    assert straight.state is not None
    steps = straight.state.steps_per_epoch
    stopped = fit(config(tmp_path / "b", *knobs, f"training.max_steps={steps + 2}", library="timm", arch="test_resnet"))
    run = stopped.components.paths.root  # type: ignore[union-attr]
    saved = frozen_states(run)
    assert saved[0] is True and saved[-1] is False  # after epoch 0: frozen; the stop: unfrozen
    resumed = kiln.resume(run, [f"training.max_steps={2 * steps}"], quiet=True)
    assert resumed.status == "completed"
    final = kiln.load_model(run).state_dict()
    expected = straight.components.model.state_dict()  # type: ignore[union-attr]
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[k], expected[k].cpu()) for k in final)


def frozen_states(run: Path) -> list[Any]:
    """The FineTune state of each checkpoint of ``run``, oldest first."""
    states = []
    for path in sorted(p for p in (run / "checkpoints").iterdir() if p.is_dir()):
        checkpoint = load_checkpoint(path)
        states.append((checkpoint.meta["global_step"], checkpoint.trainer["callbacks"]["FineTune"]["frozen"]))
    return [frozen for _, frozen in sorted(states)]
