"""What a finder works on: a run's data, model, task and optimizer, built by kiln's own builders,
and ``isolated``: a copy of model and optimizer to experiment with, the RNG streams put back after.

A finder must leave no trace. It trains a deep copy of the model with a copy of the optimizer's
state, and every random number generator it draws from (Python, NumPy, torch, CUDA) is captured
before and restored after, so the weights, the optimizer and the RNGs of the caller are bit for bit
what they were (``tests/tune`` hashes them).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kiln.config.schema import KilnConfig
from kiln.data.build import build_data
from kiln.data.loader import loader_knobs, make_loader
from kiln.data.spec import DataBundle
from kiln.models.build import build_model
from kiln.tasks import Task, build_task
from kiln.train.optim import build_optimizer
from kiln.train.rng import capture_rng, resolve_device, restore_rng, seed_everything
from kiln.train.sampler import EpochSampler


@dataclass
class Workbench:
    """The pieces a training step needs, as a run of ``config`` would build them."""

    config: KilnConfig
    device: torch.device
    train: Dataset[Any]
    model: nn.Module
    task: Task
    optimizer: torch.optim.Optimizer

    def loader(self, batch_size: int, epoch: int = 0) -> DataLoader[Any]:
        """The training loader of a run at ``batch_size``: the run's shuffled order for ``epoch``
        (its own generator: building or iterating it draws from no global RNG)."""
        cfg = self.config
        sampler = EpochSampler(len(self.train), cfg.run.seed, keyed=bool(getattr(self.train, "epoch_keys", False)))  # type: ignore[arg-type]
        sampler.set_epoch(epoch)
        return make_loader(self.train, batch_size, cfg.data.num_workers, sampler,
                           **loader_knobs(cfg.data, self.device))

    @property
    def train_size(self) -> int:
        return len(self.train)  # type: ignore[arg-type]


def build_workbench(config: KilnConfig, *, model: nn.Module | None = None,
                    data: DataBundle | None = None) -> Workbench:
    """Seed from ``run.seed`` and build data, model (unless given), task and optimizer as a new run
    of ``config`` would (:func:`kiln.train.run.prepare` calls the same builders)."""
    seed_everything(config.run.seed)
    device = resolve_device(config.run.device)
    if data is None:
        data = build_data(config.data, config.run.seed)
    if model is None:
        model = build_model(config.model, data.spec)
    model.to(device)
    task = build_task(data.spec, config.training.loss)
    task.to(device)
    return Workbench(config, device, data.train, model, task, build_optimizer(model, config.training))


@contextlib.contextmanager
def isolated(bench: Workbench) -> Iterator[tuple[nn.Module, torch.optim.Optimizer]]:
    """A deep copy of the model and an optimizer over it holding a copy of the optimizer's state;
    every RNG is put back when the block ends, however it ends."""
    rng = capture_rng()
    try:
        model = copy.deepcopy(bench.model)
        optimizer = build_optimizer(model, bench.config.training)
        optimizer.load_state_dict(copy.deepcopy(bench.optimizer.state_dict()))
        yield model, optimizer
    finally:
        restore_rng(rng)
