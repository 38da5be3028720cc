"""The convolutional network: conv blocks, optional dropout, then dense layers.

Convolutions use 'valid' padding, as Keras's Conv2D does by default. The reference networks:
baseline ``filters: [32], hidden: []``; enhanced ``filters: [64], conv_dropout: 0.25,
hidden: [128], dropout: 0.5``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kiln.config.model_options import CnnOptions
from kiln.data.spec import DataSpec
from kiln.errors import ModelError
from kiln.models.layers import ACTIVATIONS, dense_stack


def build(cfg: CnnOptions, spec: DataSpec) -> nn.Module:
    """Build the CNN for image inputs ``(channels, height, width)``."""
    if len(spec.input_shape) != 3:
        raise ModelError(
            f"model 'cnn' needs image inputs (channels, height, width), but dataset "
            f"{spec.name!r} has input shape {list(spec.input_shape)}; use model.name=mlp instead"
        )
    channels = spec.input_shape[0]
    features: list[nn.Module] = []
    for filters in cfg.filters:
        features.append(nn.Conv2d(channels, filters, cfg.kernel_size))
        if cfg.batch_norm:
            features.append(nn.BatchNorm2d(filters))
        features.append(ACTIVATIONS[cfg.activation]())
        if cfg.pool == "max":
            features.append(nn.MaxPool2d(2))
        elif cfg.pool == "avg":
            features.append(nn.AvgPool2d(2))
        channels = filters
    if cfg.conv_dropout > 0:
        features.append(nn.Dropout(cfg.conv_dropout))
    conv = nn.Sequential(*features)
    flat = _flat_size(conv, spec.input_shape, cfg)
    hidden, width = dense_stack(flat, cfg.hidden, cfg.dropout, cfg.activation, cfg.batch_norm)
    return nn.Sequential(*features, nn.Flatten(), *hidden, nn.Linear(width, spec.output_size))


def _flat_size(conv: nn.Module, input_shape: tuple[int, ...], cfg: CnnOptions) -> int:
    """Width after the conv blocks, found by running one zero sample through them."""
    try:
        with torch.no_grad():
            out = conv.eval()(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        raise ModelError(
            f"the conv blocks (filters={cfg.filters}, kernel_size={cfg.kernel_size}, "
            f"pool={cfg.pool}) shrink a {list(input_shape)} input to nothing: use fewer filters "
            f"entries, a smaller kernel_size or pool: none ({exc})"
        ) from None
    return math.prod(out.shape[1:])
