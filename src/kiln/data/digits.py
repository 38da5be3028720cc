"""scikit-learn's bundled 8x8 handwritten digits: 1,797 images, ten classes, no download.

Small enough to train in seconds on a laptop CPU, which makes it the default dataset and the one
the demo and the integration tests use. It ships no test split, so one is carved with
``data.test_fraction`` (fixed seed, the same for every run).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from kiln.data.spec import DataBundle, DataSpec
from kiln.data.split import make_bundle

if TYPE_CHECKING:
    from kiln.config.data_options import DigitsOptions

INPUT_SCALE = 1 / 16  # raw pixels are 0..16; inputs are scaled to 0..1 before normalization


def build(cfg: DigitsOptions, seed: int) -> DataBundle:
    """Load the digits, scale pixels to [0, 1], split and normalize them (``kiln.data.split``)."""
    images, labels = load_digits_arrays()
    x = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) * INPUT_SCALE
    y = torch.as_tensor(labels, dtype=torch.int64)
    spec = DataSpec(
        name="digits",
        task="classification",
        input_shape=(1, 8, 8),
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        extra={"input_scale": INPUT_SCALE},
    )
    return make_bundle(x, y, cfg, seed, spec)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``sklearn.datasets.load_digits(return_X_y=True)``: pixels (1797, 64) float64 and labels int64.

    Read from the file scikit-learn ships, as ``load_digits`` reads it, without importing
    ``sklearn.datasets``: that import (pandas, scipy.stats) takes about 3 of the 12 seconds a
    one-epoch digits run takes from the command line, and it was the only use of scikit-learn in
    a training run. Where scikit-learn keeps the file elsewhere, ``load_digits`` itself.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as handle:
                data = np.loadtxt(handle, delimiter=",")
            return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return images, labels.astype(np.int64)
