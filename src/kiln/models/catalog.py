"""The model catalog. Entries are import paths so listing and validating names imports nothing heavy.

Every factory has the signature ``build(cfg: ModelConfig, spec: DataSpec) -> nn.Module``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.catalog import Catalog

if TYPE_CHECKING:
    from torch import nn

MODELS: Catalog[nn.Module] = Catalog("model")
MODELS.register(
    "mlp",
    "kiln.models.mlp:build",
    "flatten, dense hidden layers, output layer",
    ("hidden", "dropout", "activation", "batch_norm"),
)
MODELS.register(
    "cnn",
    "kiln.models.cnn:build",
    "conv blocks ('valid' padding) with pooling, then dense layers",
    ("filters", "kernel_size", "pool", "conv_dropout", "hidden", "dropout", "activation", "batch_norm"),
)
MODELS.register(
    "transformer",
    "kiln.models.transformer:build",
    "decoder-only transformer over token ids (causal fused attention), for language modeling",
    ("d_model", "n_heads", "n_layers", "d_ff", "dropout", "block_size", "tie_weights"),
)
