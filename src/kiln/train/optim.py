"""Optimizer, learning-rate schedule and the L2 penalty, built from the training config."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kiln.config.schema import SchedulerConfig, TrainingConfig


def build_optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``training.optimizer`` with ``training.lr`` and friends."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


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
