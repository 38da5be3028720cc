"""Optimizer, learning-rate schedule and the L2 penalty, built from the training config."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from kiln.config.schema import SchedulerConfig, TrainingConfig
from kiln.errors import ConfigError
from kiln.models.backbones import backbone_split


def build_optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``training.optimizer`` with ``training.lr`` and friends.

    A backbone model (torchvision, timm) gets two parameter groups, the head's first (so the lr
    logged is ``training.lr``) and the backbone's at ``lr x training.backbone_lr_scale``, each with
    all its parameters, frozen ones too: unfreezing then changes no group, and the optimizer's
    state lines up across a resume. Every other model has one group of its trainable parameters.
    """
    params = parameter_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def parameter_groups(model: nn.Module, cfg: TrainingConfig) -> list[Any]:
    """What the optimizer takes: the trainable parameters, or a backbone model's two groups."""
    split = backbone_split(model)
    if split is None:
        if cfg.backbone_lr_scale != 1.0:
            raise ConfigError(
                f"training.backbone_lr_scale needs a model with a backbone, and {type(model).__name__} has none",
                field="training.backbone_lr_scale",
                hint="use model.name torchvision or timm (or mark your model's head with "
                "kiln.models.backbones.mark_head), or unset training.backbone_lr_scale",
            )
        return [p for p in model.parameters() if p.requires_grad]
    backbone, head = split
    groups = [
        {"name": "head", "params": head, "lr": cfg.lr},
        {"name": "backbone", "params": backbone, "lr": cfg.lr * cfg.backbone_lr_scale},
    ]
    return [g for g in groups if g["params"]]


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """The torch scheduler for ``cfg``; cosine ones run per optimizer step over ``total_steps``."""
    if cfg.name == "none":
        return None
    if cfg.name == "reduce_on_plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=cfg.mode, factor=cfg.factor, patience=cfg.patience, min_lr=cfg.min_lr
        )
    if cfg.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(total_steps, 1), eta_min=cfg.min_lr
        )
    base_lr = optimizer.param_groups[0]["lr"]
    floor = cfg.min_lr / base_lr if base_lr > 0 else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(cfg.warmup_steps, max(total_steps, 1), floor)
    )


class WarmupCosine:
    """LR multiplier: linear from 0 to 1 over ``warmup`` steps, then cosine down to ``floor``."""

    def __init__(self, warmup: int, total: int, floor: float) -> None:
        self.warmup, self.total, self.floor = warmup, total, floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


def weight_matrices(model: nn.Module) -> list[Tensor]:
    """Parameters the L2 penalty applies to: weights with 2+ dims (not biases or norms)."""
    return [p for name, p in model.named_parameters() if p.ndim > 1 and name.endswith("weight")]


def l2_penalty(weights: list[Tensor], factor: float) -> Tensor:
    """``factor * sum(w**2)``, as Keras's kernel_regularizer=l2(factor) adds to the loss."""
    return factor * torch.stack([w.pow(2).sum() for w in weights]).sum()
