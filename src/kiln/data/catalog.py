"""The dataset catalog. Entries are import paths so listing and validating names imports nothing heavy.

Every factory has the signature ``build(cfg: DataConfig, seed: int) -> DataBundle``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.catalog import Catalog

if TYPE_CHECKING:
    from kiln.data.spec import DataBundle

DATASETS: Catalog[DataBundle] = Catalog("dataset")
DATASETS.register("digits", "kiln.data.digits:build", "scikit-learn's bundled 8x8 digits (no download)")
DATASETS.register("mnist", "kiln.data.mnist:build_mnist", "MNIST IDX files from data.path")
DATASETS.register(
    "fashion_mnist", "kiln.data.mnist:build_fashion_mnist", "Fashion-MNIST IDX files from data.path"
)
DATASETS.register("csv", "kiln.data.tabular:build", "a CSV file with a target column")
DATASETS.register("synthetic", "kiln.data.synthetic:build", "deterministic generated data")
DATASETS.register("text", "kiln.data.text:build", "a UTF-8 text file for character-level language modeling")
