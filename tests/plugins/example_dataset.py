"""An example third-party dataset, the whole of it: its options model and its factory.

Registered with ``DATASETS.register("rings", "tests.plugins.example_dataset:build", "...",
options=RingsOptions)``, it is chosen in the config like a built-in dataset:
``data.name=rings data.noise=0.2``. Its options extend kiln's ``SplitOptions``, so it takes
``data.val_fraction``, ``data.subset``, ... too, and ``make_bundle`` carves the splits.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from kiln.config.data_options import SplitOptions
from kiln.data import DataBundle, DataSpec
from kiln.data.split import make_bundle


class RingsOptions(SplitOptions):
    """Two noisy concentric rings: a binary task that no linear model solves."""

    name: Literal["rings"] = "rings"
    n_samples: int = Field(400, ge=4, description="points generated, half on each ring")
    noise: float = Field(0.1, ge=0.0, description="std of the radial noise")


def build(options: RingsOptions, seed: int) -> DataBundle:
    """The same seed gives the same points; splits and normalization are kiln's."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(options.n_samples) % 2  # 0: the inner ring (radius 1), 1: the outer (2)
    angle = 2 * math.pi * torch.rand(options.n_samples, generator=generator)
    radius = 1.0 + labels + options.noise * torch.randn(options.n_samples, generator=generator)
    x = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    spec = DataSpec("rings", "binary", (2,), 2, class_names=("inner", "outer"))
    return make_bundle(x, labels, options, seed, spec, per_feature=True)
