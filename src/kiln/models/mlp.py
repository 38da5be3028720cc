"""The multilayer perceptron: flatten, dense hidden layers, one output layer.

The reference MLP 784->256->128->64->10 with dropout 0.3 is
``model: {name: mlp, hidden: [256, 128, 64], dropout: 0.3}`` (plus ``training.l2: 1e-3``).
"""

from __future__ import annotations

import math

from torch import nn

from kiln.config.model_options import MlpOptions
from kiln.data.spec import DataSpec
from kiln.models.layers import dense_stack


def build(cfg: MlpOptions, spec: DataSpec) -> nn.Module:
    """Build the MLP for inputs of ``spec.input_shape`` and ``spec.output_size`` outputs."""
    hidden, width = dense_stack(
        math.prod(spec.input_shape), cfg.hidden, cfg.dropout, cfg.activation, cfg.batch_norm
    )
    return nn.Sequential(nn.Flatten(), *hidden, nn.Linear(width, spec.output_size))
