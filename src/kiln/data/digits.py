"""scikit-learn's bundled 8x8 handwritten digits: 1,797 images, ten classes, no download.

Small enough to train in seconds on a laptop CPU, which makes it the default dataset and the one
the demo and the integration tests use. It ships no test split, so one is carved with
``data.test_fraction`` (fixed seed, the same for every run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kiln.data.spec import DataBundle, DataSpec
from kiln.data.split import make_bundle

if TYPE_CHECKING:
    from kiln.config.data_options import DigitsOptions

INPUT_SCALE = 1 / 16  # raw pixels are 0..16; inputs are scaled to 0..1 before normalization


def build(cfg: DigitsOptions, seed: int) -> DataBundle:
    """Load the digits, scale pixels to [0, 1], split and normalize them (``kiln.data.split``)."""
    from sklearn.datasets import load_digits  # heavy import, only when this dataset is built

    images, labels = load_digits(return_X_y=True)
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
