"""The dataset and model catalogs: names, import paths and the knobs each entry reads.

They live at the config's level, not in ``kiln.data``/``kiln.models``, because the config validates
``data.name`` and ``model.name`` against them while data and models sit above the config (they read
its schema). Entries are ``package.module:attr`` strings, so holding them here imports nothing of
data or models; ``kiln.data.catalog.DATASETS`` and ``kiln.models.catalog.MODELS`` are these very
objects, typed with what their factories build, and adding an entry means registering it here.

Every dataset factory has the signature ``build(cfg: DataConfig, seed: int) -> DataBundle``; every
model factory ``build(cfg: ModelConfig, spec: DataSpec) -> nn.Module``.
"""

from __future__ import annotations

from typing import Any

from kiln.catalog import Catalog

DATASETS: Catalog[Any] = Catalog("dataset")
DATASETS.register("digits", "kiln.data.digits:build", "scikit-learn's bundled 8x8 digits (no download)")
DATASETS.register("mnist", "kiln.data.mnist:build_mnist", "MNIST IDX files from data.path")
DATASETS.register(
    "fashion_mnist", "kiln.data.mnist:build_fashion_mnist", "Fashion-MNIST IDX files from data.path"
)
DATASETS.register("csv", "kiln.data.tabular:build", "a CSV file with a target column")
DATASETS.register("synthetic", "kiln.data.synthetic:build", "deterministic generated data")
DATASETS.register("text", "kiln.data.text:build", "a UTF-8 text file for character-level language modeling")

MODELS: Catalog[Any] = Catalog("model")
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
