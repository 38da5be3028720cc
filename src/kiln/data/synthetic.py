"""Deterministic generated data: any input shape, any number of classes, learnable by design.

Classification draws one random prototype per class and places each sample at its class's
prototype plus Gaussian noise (``data.synthetic.noise``), with balanced classes; two classes are
``binary``. ``num_classes: 1`` is regression: Gaussian inputs and a fixed random linear function of
them plus noise. The same seed always gives the same data, which makes it the dataset for tests,
benchmarks and smoke runs of any model shape.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from kiln.data.spec import DataBundle, DataSpec, Task
from kiln.data.split import make_bundle
from kiln.errors import ConfigError

if TYPE_CHECKING:
    from kiln.config.data_options import SyntheticOptions


def generate(
    n_samples: int,
    input_shape: tuple[int, ...],
    num_classes: int,
    noise: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[n, *shape]`` float32; targets int64 ``[n]`` (regression: float32 ``[n, 1]``)."""
    features = math.prod(input_shape)
    if num_classes == 1:
        x = torch.randn(n_samples, features, generator=generator)
        # scaled so the target's signal has unit variance whatever the input size
        weight = torch.randn(features, 1, generator=generator) / math.sqrt(features)
        y = x @ weight + noise * torch.randn(n_samples, 1, generator=generator)
        return x.reshape(n_samples, *input_shape), y
    prototypes = torch.randn(num_classes, features, generator=generator)
    # balanced classes in random order: every class appears, even in a small sample
    labels = (torch.arange(n_samples) % num_classes)[torch.randperm(n_samples, generator=generator)]
    x = prototypes[labels] + noise * torch.randn(n_samples, features, generator=generator)
    return x.reshape(n_samples, *input_shape), labels


def build(cfg: SyntheticOptions, seed: int) -> DataBundle:
    """Generate ``cfg.synthetic`` data with ``seed``; split and normalize it like any dataset."""
    syn = cfg.synthetic
    shape = tuple(syn.input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise ConfigError(
            "data.synthetic.input_shape must be a non-empty list of positive sizes, e.g. "
            f"[1, 28, 28] or [20]; got {list(shape)}"
        )
    x, y = generate(
        syn.n_samples, shape, syn.num_classes, syn.noise, torch.Generator().manual_seed(seed)
    )
    k = syn.num_classes
    task: Task = "regression" if k == 1 else "binary" if k == 2 else "classification"
    spec = DataSpec(
        name="synthetic",
        task=task,
        input_shape=shape,
        num_classes=syn.num_classes,
        class_names=() if task == "regression" else tuple(str(i) for i in range(syn.num_classes)),
    )
    return make_bundle(x, y, cfg, seed, spec)
