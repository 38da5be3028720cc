"""The preview grid: real PNG files of the first training samples as the model receives them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tests.idx_data import write_idx_dataset

from kiln.config.loader import load_config
from kiln.config.schema import KilnConfig
from kiln.data.build import build_data
from kiln.data.images.preview import (
    COLUMNS,
    LABEL_HEIGHT,
    PADDING,
    preview_from_bundle,
    write_preview,
)

FLIP = "data.augment=[{name: horizontal_flip, p: 1.0}]"
CROP = "data.augment=[{name: random_crop, padding: 3}]"  # a different crop every epoch


def idx_config(data: Path, *overrides: str) -> KilnConfig:
    return load_config(None, ["data.name=mnist", f"data.path={data}", "run.seed=4", *overrides])


def test_write_preview_writes_a_png_grid_of_the_right_size(tmp_path: Path) -> None:
    cfg = idx_config(write_idx_dataset(tmp_path / "idx"), FLIP)
    path = write_preview(cfg, tmp_path / "out" / "preview.png", count=10)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        cell = 64  # 16-pixel images scaled up 4 times, so a label fits under each
        rows = 2  # 10 samples, 8 a row
        assert image.size == (COLUMNS * (cell + PADDING) + PADDING, rows * (cell + LABEL_HEIGHT + PADDING) + PADDING)


def test_cells_show_the_augmented_samples_un_normalized_with_their_labels(tmp_path: Path) -> None:
    cfg = idx_config(write_idx_dataset(tmp_path / "idx"), CROP)
    bundle = build_data(cfg.data, cfg.run.seed)
    path = preview_from_bundle(bundle, tmp_path / "p.png", count=3)
    with Image.open(path) as image:
        grid = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    mean, std = bundle.spec.mean[0], bundle.spec.std[0]
    for i in range(3):
        x, _ = bundle.train[(0, i)]  # type: ignore[index]
        expected = (x[0] * std + mean).clamp(0, 1).mul(255).round().byte()
        expected = expected.repeat_interleave(4, 0).repeat_interleave(4, 1)
        left = PADDING + i * (64 + PADDING)
        cell = grid[:, PADDING : PADDING + 64, left : left + 64]
        assert all((cell[c].int() - expected.int()).abs().max() <= 1 for c in range(3)), i  # gray: R = G = B
        band = grid[:, PADDING + 64 : PADDING + 64 + LABEL_HEIGHT, left : left + 64]
        assert (band < 128).any()  # the class name is written under the image
    # epoch 1 crops differently, so the check above could tell which epoch the preview shows
    assert all(not torch.equal(bundle.train[(0, i)][0], bundle.train[(1, i)][0]) for i in range(3))  # type: ignore[index]


def test_a_folder_listed_class_by_class_is_previewed_class_by_class_in_turn(tmp_path: Path) -> None:
    from kiln.data.images.preview import _spread
    from kiln.testing.images import write_digits_folder

    folder = write_digits_folder(tmp_path / "photos", classes=3, per_class=6, size=16)
    cfg = load_config(None, ["data.name=image_folder", f"data.path={folder}", "data.image.size=16",
                             "data.val_fraction=0", "data.test_fraction=0"])
    train = build_data(cfg.data, cfg.run.seed).train
    picked = _spread(train, 7)
    assert [train.targets[i] for i in picked] == [0, 1, 2, 0, 1, 2, 0]  # type: ignore[attr-defined]
    assert len(set(picked)) == 7
