"""Exact optimizer, scheduler and L2 construction from the training config."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kiln.config.schema import SchedulerConfig, TrainingConfig
from kiln.train.optim import (
    WarmupCosine,
    build_optimizer,
    build_scheduler,
    l2_penalty,
    weight_matrices,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[1].weight.requires_grad_(False)  # frozen parameters are left out of the optimizer
    return model


def _group(opt: torch.optim.Optimizer) -> dict[str, object]:
    assert len(opt.param_groups) == 1
    return opt.param_groups[0]


def test_sgd_gets_every_knob() -> None:
    model = _model()
    cfg = TrainingConfig(optimizer="sgd", lr=0.25, momentum=0.5, nesterov=True, weight_decay=0.125)
    opt = build_optimizer(model, cfg)
    assert type(opt) is torch.optim.SGD
    g = _group(opt)
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.25, 0.5, True, 0.125)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(g["params"]) == len(trainable) == 5
    assert all(a is b for a, b in zip(g["params"], trainable, strict=True))


@pytest.mark.parametrize(("name", "cls"), [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam)])
def test_adam_family_gets_lr_betas_and_decay(name: str, cls: type) -> None:
    model = _model()
    cfg = TrainingConfig(optimizer=name, lr=0.02, betas=(0.8, 0.95), weight_decay=0.3)
    opt = build_optimizer(model, cfg)
    assert type(opt) is cls
    g = _group(opt)
    assert (g["lr"], tuple(g["betas"]), g["weight_decay"]) == (0.02, (0.8, 0.95), 0.3)
    assert len(g["params"]) == 5


def _opt(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_no_scheduler() -> None:
    assert build_scheduler(_opt(), SchedulerConfig(name="none"), 10) is None


def test_reduce_on_plateau_gets_every_knob() -> None:
    cfg = SchedulerConfig(name="reduce_on_plateau", mode="max", factor=0.5, patience=3, min_lr=0.01)
    s = build_scheduler(_opt(), cfg, 10)
    assert isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (s.mode, s.factor, s.patience, s.min_lrs) == ("max", 0.5, 3, [0.01])


def test_step_scheduler() -> None:
    s = build_scheduler(_opt(), SchedulerConfig(name="step", step_size=4, gamma=0.25), 10)
    assert isinstance(s, torch.optim.lr_scheduler.StepLR)
    assert (s.step_size, s.gamma) == (4, 0.25)


@pytest.mark.parametrize(("total", "t_max"), [(7, 7), (0, 1), (1, 1)])
def test_cosine_runs_over_total_steps_at_least_one(total: int, t_max: int) -> None:
    s = build_scheduler(_opt(), SchedulerConfig(name="cosine", min_lr=0.003), total)
    assert isinstance(s, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert (s.T_max, s.eta_min) == (t_max, 0.003)


def test_warmup_cosine_floor_is_min_lr_over_base_lr() -> None:
    s = build_scheduler(_opt(0.5), SchedulerConfig(name="warmup_cosine", warmup_steps=2, min_lr=0.05), 10)
    assert isinstance(s, torch.optim.lr_scheduler.LambdaLR)
    fn = s.lr_lambdas[0]
    assert isinstance(fn, WarmupCosine)
    assert (fn.warmup, fn.total, fn.floor) == (2, 10, pytest.approx(0.1))


def test_warmup_cosine_total_is_at_least_one_and_zero_lr_has_zero_floor() -> None:
    s = build_scheduler(_opt(0.0), SchedulerConfig(name="warmup_cosine", min_lr=0.05), 0)
    assert isinstance(s, torch.optim.lr_scheduler.LambdaLR)
    fn = s.lr_lambdas[0]
    assert (fn.warmup, fn.total, fn.floor) == (0, 1, 0.0)


def test_warmup_cosine_values() -> None:
    f = WarmupCosine(warmup=4, total=14, floor=0.2)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0)
    # halfway through the decay: floor + (1 - floor) * 0.5
    assert f(9) == pytest.approx(0.2 + 0.8 * 0.5)
    assert f(6) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.2)))
    assert f(14) == pytest.approx(0.2)
    assert f(100) == pytest.approx(0.2)  # progress is capped at 1


def test_warmup_cosine_without_warmup_and_warmup_past_total() -> None:
    f = WarmupCosine(warmup=0, total=2, floor=0.0)
    assert [f(0), f(1), f(2)] == [pytest.approx(1.0), pytest.approx(0.5), pytest.approx(0.0)]
    g = WarmupCosine(warmup=3, total=3, floor=0.0)  # decay span 0: max(1, 0) avoids dividing by zero
    assert g(3) == pytest.approx(1.0)
    assert g(4) == pytest.approx(0.0)


def test_weight_matrices_are_the_2d_weights_only() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model.register_parameter("extra_weight_bias", nn.Parameter(torch.ones(2, 2)))
    got = weight_matrices(model)
    assert [w.shape for w in got] == [(4, 3), (2, 4)]
    assert got[0] is model[0].weight and got[1] is model[2].weight


def test_l2_penalty_is_factor_times_sum_of_squares() -> None:
    w = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0], [-1.0]])]
    assert l2_penalty(w, 0.5).item() == 0.5 * (1 + 4 + 9 + 1)
