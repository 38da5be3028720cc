"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's and Lightning's
``lr_find``): train a copy of the model for ``steps`` optimizer steps while the learning rate
grows exponentially from ``min_lr`` to ``max_lr``, and watch the loss.

The loss is smoothed with a bias-corrected exponential moving average (beta 0.98, as fastai and
Lightning); the test stops early once the smoothed loss exceeds 4 times its best (it diverged:
larger rates only get worse) or is not finite. The suggestion is Lightning's rule: the rate at the
steepest descent of the smoothed loss (the most negative ``numpy.gradient``), ignoring the first
10 and the last point, where the curve is noise or already diverging. The rate of the lowest loss
divided by 10 (fastai's older ``lr_min``) is reported beside it; it is usually close.

>>> from kiln.testing import tiny_config
>>> from kiln.tune import build_workbench
>>> bench = build_workbench(tiny_config("runs"))  # doctest: +SKIP
>>> lr_range_test(bench).suggestion  # doctest: +SKIP
0.0123
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kiln.errors import KilnError, UsageError
from kiln.tune.step import micro_batches, new_scaler, train_step
from kiln.tune.workbench import Workbench, isolated

SMOOTHING = 0.98  # beta of the moving average of the loss
DIVERGED = 4.0  # stop once the smoothed loss exceeds this many times its best
SKIP_BEGIN, SKIP_END = 10, 1  # points left out of the steepest-descent search


@dataclass(frozen=True)
class LRFinding:
    """What the range test saw and what it suggests for ``training.lr``."""

    lrs: list[float]
    losses: list[float]  # each step's mean training loss, as measured
    smoothed: list[float]
    suggestion: float | None  # the rate at the steepest descent; None: too few steps to tell
    min_loss_lr: float  # the rate at the lowest smoothed loss
    stopped: str  # why the test ended: "max_lr reached", "diverged", ...
    batch_size: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_schedule(min_lr: float, max_lr: float, steps: int) -> list[float]:
    """``steps`` rates growing exponentially from ``min_lr`` to ``max_lr`` (both included)."""
    if not 0 < min_lr < max_lr:
        raise UsageError(f"the range test needs 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if steps < 2:
        raise UsageError(f"the range test needs at least 2 steps, got {steps}")
    ratio = max_lr / min_lr
    return [min_lr * ratio ** (i / (steps - 1)) for i in range(steps)]


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """The bias-corrected exponential moving average of ``losses``."""
    average, out = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return out


def steepest(lrs: list[float], smoothed: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest, the first ``SKIP_BEGIN`` and the last
    ``SKIP_END`` points left out; None when fewer than 2 points remain."""
    window = np.asarray(smoothed[SKIP_BEGIN:len(smoothed) - SKIP_END], dtype=np.float64)
    if len(window) < 2 or not np.isfinite(window).all():
        return None
    return float(lrs[SKIP_BEGIN + int(np.gradient(window).argmin())])


def lr_range_test(bench: Workbench, min_lr: float = 1e-7, max_lr: float = 1.0, steps: int = 100,
                  batch_size: int | None = None) -> LRFinding:
    """Run the range test on a copy of ``bench``'s model and optimizer (see :func:`isolated`).

    Each step is one optimizer step of the run (``training.grad_accum`` micro-batches of
    ``batch_size``, default ``training.batch_size``). A model with several parameter groups (a
    backbone at ``training.backbone_lr_scale``) keeps their ratios: the rates are ``training.lr``'s.
    """
    lrs = lr_schedule(min_lr, max_lr, steps)
    size = batch_size or bench.config.training.batch_size
    losses: list[float] = []
    smoothed: list[float] = []
    stopped = "max_lr reached"
    with isolated(bench) as (model, optimizer):
        base = bench.config.training.lr
        ratios = [group["lr"] / base for group in optimizer.param_groups]
        scaler = new_scaler(bench)
        batches = micro_batches(bench, size)
        for lr in lrs:
            group = next(batches, None)
            if group is None:
                stopped = "no training data"
                break
            for param_group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                param_group["lr"] = lr * ratio
            loss = train_step(bench, model, optimizer, scaler, group)
            losses.append(loss)
            if not math.isfinite(loss):
                smoothed.append(math.inf)
                stopped = "diverged (the loss is not finite)"
                break
            smoothed = smooth(losses)
            if smoothed[-1] > DIVERGED * min(smoothed):
                stopped = f"diverged (the smoothed loss passed {DIVERGED:g}x its lowest)"
                break
    tried = lrs[: len(losses)]
    finite = [(s, lr) for s, lr in zip(smoothed, tried, strict=True) if math.isfinite(s)]
    if not finite:
        raise KilnError(
            f"the range test diverged at once (loss {losses[0] if losses else 'none'} at lr {min_lr:g})",
            hint="lower --min-lr, or check the data and the model on a short kiln train run",
        )
    min_loss_lr = min(finite)[1]
    return LRFinding(tried, losses, smoothed, steepest(tried, smoothed), min_loss_lr, stopped, size)
