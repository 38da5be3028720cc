"""Small IDX datasets (MNIST's file format) written by tests: random 0..255 pixels of any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiln.data.mnist import FILES, write_idx

SIZE = 16  # the format takes any size, and tiny images train fast


def write_idx_dataset(directory: Path, n_train: int = 48, n_test: int = 12, size: int = SIZE) -> Path:
    """The four gzipped IDX files in ``directory`` (returned); labels are 0..9 in turn."""
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (n_train, size, size), dtype=np.uint8), (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, size, size), dtype=np.uint8), (np.arange(n_test) % 10).astype(np.uint8),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(FILES, arrays, strict=True):
        write_idx(directory / f"{stem}.gz", array)
    return directory
