"""An example third-party model, the whole of it: its options model and its factory.

Registered with ``MODELS.register("wide_mlp", "tests.plugins.example_model:build", "...",
options=WideOptions)``, it is chosen in the config like a built-in model:
``model.name=wide_mlp model.width=32``; ``kiln models`` lists its options. Without registering,
``model.target=tests.plugins.example_model:WIDE_MLP model.options={width: 32}`` names the entry
by import path, and its options are validated the same way.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field
from torch import nn

from kiln.catalog import Entry
from kiln.config import ModelConfig
from kiln.data import DataSpec


class WideOptions(ModelConfig):
    """One wide hidden layer. Each field is a key of ``model:``, with its default and description."""

    name: Literal["wide_mlp"] = "wide_mlp"
    width: int = Field(64, ge=1, description="units of the one hidden layer")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after the hidden layer")


def build(options: WideOptions, spec: DataSpec) -> nn.Module:
    """Sized from the data: ``spec.input_shape`` in, ``spec.output_size`` out."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(spec.input_shape), options.width),
        nn.ReLU(),
        nn.Dropout(options.dropout),
        nn.Linear(options.width, spec.output_size),
    )


WIDE_MLP = Entry("wide_mlp", "one wide hidden layer", build, options=WideOptions)
