"""Classification, binary classification and regression tasks, and their losses."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.config.schema import LossConfig
from kiln.data.spec import DataSpec
from kiln.data.split import CLASS_COUNTS
from kiln.errors import ConfigError
from kiln.tasks.meters import ClassificationMeter, RegressionMeter

_ALLOWED = {
    "classification": ("cross_entropy", "focal"),
    "binary": ("bce", "focal"),
    "regression": ("mse", "mae"),
}
_DEFAULT = {"classification": "cross_entropy", "binary": "bce", "regression": "mse"}


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_t)**gamma to focus on hard examples."""

    def __init__(self, gamma: float, weight: Tensor | None = None, binary: bool = False) -> None:
        super().__init__()
        self.gamma = gamma
        self.binary = binary
        self.weight: Tensor | None
        self.register_buffer("weight", weight)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if self.binary:
            targets = targets.reshape(outputs.shape).to(outputs.dtype)
            ce = F.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
        else:
            ce = F.cross_entropy(outputs, targets, reduction="none")
        # p_t is the model's probability of the true class, so it comes from the unweighted
        # cross-entropy: exp(-w * ce) would be p_t ** w and skew the focusing term.
        focal = (1 - torch.exp(-ce)) ** self.gamma * ce
        if self.weight is None or self.binary:
            return focal.mean()
        # Class weights as cross_entropy applies them: a weighted mean, so gamma=0 is exactly
        # F.cross_entropy(weight=...).
        alpha = self.weight[targets]
        return (alpha * focal).sum() / alpha.sum()


class SupervisedTask:
    """Batches are ``(inputs, targets)``; loss and metrics follow the data's task."""

    def __init__(self, spec: DataSpec, loss_cfg: LossConfig) -> None:
        self.task_name = spec.task
        self.spec = spec
        self.criterion = build_loss(spec, loss_cfg)
        self.loss_name = loss_cfg.name if loss_cfg.name != "auto" else _DEFAULT[spec.task]

    @property
    def name(self) -> str:
        return self.task_name

    def split_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        inputs, targets = batch[0], batch[1]
        return inputs, targets

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if self.name == "binary" and self.loss_name == "bce":
            outputs, targets = outputs.reshape(-1), targets.reshape(-1).to(outputs.dtype)
        elif self.name == "regression":
            n = targets.shape[0]
            outputs, targets = outputs.reshape(n, -1), targets.reshape(n, -1).to(outputs.dtype)
        loss: Tensor = self.criterion(outputs, targets)
        return loss

    def meter(self) -> ClassificationMeter | RegressionMeter:
        if self.name == "regression":
            return RegressionMeter()
        return ClassificationMeter(binary=self.name == "binary")

    def predict(self, outputs: Tensor) -> Tensor:
        if self.name == "classification":
            return outputs.argmax(dim=-1)
        if self.name == "binary":
            return (outputs.reshape(-1) > 0).long()
        return outputs

    def to(self, device: torch.device) -> SupervisedTask:
        self.criterion.to(device)
        return self


def build_loss(spec: DataSpec, cfg: LossConfig) -> nn.Module:
    """The loss module for ``spec.task``; a loss that does not fit the task is a ConfigError."""
    name = cfg.name if cfg.name != "auto" else _DEFAULT[spec.task]
    if name not in _ALLOWED[spec.task]:
        raise ConfigError(
            f"training.loss.name: {name!r} does not fit the {spec.task} task of dataset "
            f"{spec.name!r}; allowed: {', '.join(_ALLOWED[spec.task])} (or auto)"
        )
    weight = None
    if cfg.class_weights is not None:
        weights = auto_class_weights(spec) if cfg.class_weights == "auto" else cfg.class_weights
        if len(weights) != spec.num_classes or spec.task == "binary":
            raise ConfigError(
                f"training.loss.class_weights: got {len(weights)} weights, but "
                f"dataset {spec.name!r} has {spec.num_classes} classes (multi-class only)"
            )
        weight = torch.tensor(weights, dtype=torch.float32)
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    if name == "focal":
        return FocalLoss(cfg.focal_gamma, weight, binary=spec.task == "binary")
    if name == "bce":
        return nn.BCEWithLogitsLoss()
    if name == "mse":
        return nn.MSELoss()
    return nn.L1Loss()


def auto_class_weights(spec: DataSpec) -> list[float]:
    """``class_weights: auto``: inverse class frequency in the training split, scaled so that the
    weights average 1 (the loss keeps its scale; a balanced split gives all ones).

    The counts are the dataset's own record (``DataSpec.extra["class_counts"]``, written by every
    built-in classification dataset), so the loss needs no pass over the data.

    >>> auto_class_weights(DataSpec("d", "classification", (1,), 2, extra={"class_counts": [6, 2]}))
    [0.5, 1.5]
    """
    counts = spec.extra.get(CLASS_COUNTS)
    if not isinstance(counts, list) or len(counts) != spec.num_classes:
        raise ConfigError(
            f"training.loss.class_weights: auto needs the training split's images per class, "
            f"which dataset {spec.name!r} does not record",
            hint=f"give one weight per class instead (training.loss.class_weights=[...], "
                 f"{spec.num_classes} values), or have the dataset builder put "
                 f"extra={{'{CLASS_COUNTS}': [count per class]}} in its DataSpec",
        )
    empty = [spec.class_names[i] if spec.class_names else str(i) for i, n in enumerate(counts) if n <= 0]
    if empty:
        raise ConfigError(
            f"training.loss.class_weights: auto cannot weigh class(es) {', '.join(empty)}: the "
            f"training split has no samples of them",
            hint="give explicit weights (training.loss.class_weights=[...]), or put samples of "
                 "every class in the training split",
        )
    inverse = [1.0 / n for n in counts]
    mean = sum(inverse) / len(inverse)
    return [w / mean for w in inverse]
