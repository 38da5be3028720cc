"""Every entry of the DATASETS catalog passes kiln's dataset contract (kiln.testing.DatasetContract).

The cases come from the catalog itself: an entry registered without a case here fails
``test_every_entry_has_a_case``. Datasets read from files get small generated ones (IDX files for
MNIST's format, a CSV, a text of random characters, so that no two windows repeat).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kiln.config.data_options import (
    CsvOptions,
    DigitsOptions,
    FashionMnistOptions,
    MnistOptions,
    SyntheticConfig,
    SyntheticOptions,
    TextConfig,
    TextOptions,
)
from kiln.config.image_options import ImageFolderOptions
from kiln.data import DATASETS
from kiln.data.mnist import FILES, write_idx
from kiln.testing import DatasetContract
from kiln.testing.images import write_digits_folder


def idx_files(directory: Path) -> Path:
    """The four IDX files of MNIST's format: 60 training and 20 test images of 6x6, ten classes."""
    rng = np.random.default_rng(0)
    for stem, n in zip(FILES, (60, 60, 20, 20), strict=True):
        if "images" in stem:
            write_idx(directory / f"{stem}.gz", rng.integers(0, 256, (n, 6, 6), dtype=np.uint8))
        else:
            write_idx(directory / stem, (np.arange(n) % 10).astype(np.uint8))
    return directory


def csv_file(directory: Path) -> Path:
    path = directory / "table.csv"
    rng = random.Random(0)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "target"])
        writer.writerows([rng.random(), rng.random(), ("red", "green", "blue")[i % 3]] for i in range(90))
    return path


def text_file(directory: Path) -> Path:
    path = directory / "chars.txt"
    rng = random.Random(0)
    path.write_text("".join(rng.choice("abcdefghij ") for _ in range(3000)), encoding="utf-8")
    return path


CASES: dict[str, Callable[[Path], Any]] = {
    "digits": lambda tmp: DigitsOptions(),
    "mnist": lambda tmp: MnistOptions(path=idx_files(tmp)),
    "fashion_mnist": lambda tmp: FashionMnistOptions(path=idx_files(tmp), val_fraction=0.2),
    "csv": lambda tmp: CsvOptions(path=csv_file(tmp)),
    "synthetic": lambda tmp: SyntheticOptions(
        synthetic=SyntheticConfig(n_samples=120, input_shape=[1, 6, 6], num_classes=3)
    ),
    "text": lambda tmp: TextOptions(path=text_file(tmp), text=TextConfig(block_size=16)),
    "image_folder": lambda tmp: ImageFolderOptions(
        path=write_digits_folder(tmp / "images", classes=3, per_class=10, size=16), image={"size": 16}
    ),
}


def test_every_entry_has_a_case() -> None:
    assert sorted(CASES) == DATASETS.names()


class TestEveryCatalogDataset(DatasetContract):
    @pytest.fixture(params=DATASETS.names())
    def name(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def build(self, name: str) -> object:
        return DATASETS.get(name)

    @pytest.fixture
    def options(self, name: str, tmp_path: Path) -> Any:
        if name not in CASES:
            pytest.fail(f"dataset {name!r} has no case in CASES")
        return CASES[name](tmp_path)
