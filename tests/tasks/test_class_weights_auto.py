"""``training.loss.class_weights: auto``: inverse class frequency in the training split, scaled to
average 1, from the counts each dataset records in ``DataSpec.extra["class_counts"]``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kiln.config.data_options import DigitsOptions
from kiln.config.image_options import ImageFolderOptions
from kiln.config.schema import LossConfig
from kiln.data.digits import build as build_digits
from kiln.data.images.build import build as build_images
from kiln.data.spec import DataSpec
from kiln.errors import ConfigError
from kiln.tasks import build_task
from kiln.tasks.supervised import FocalLoss, SupervisedTask
from kiln.testing.images import write_digits_folder


def weights_of(spec: DataSpec, name: str = "cross_entropy") -> list[float]:
    task = build_task(spec, LossConfig(name=name, class_weights="auto"))  # type: ignore[arg-type]
    assert isinstance(task, SupervisedTask)
    criterion = task.criterion
    assert isinstance(criterion, (torch.nn.CrossEntropyLoss, FocalLoss)) and criterion.weight is not None
    return criterion.weight.tolist()


def test_an_imbalanced_image_folder_gets_inverse_frequency_weights(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "imbalanced", classes=[0], per_class=6, size=16)
    write_digits_folder(root, classes=[1], per_class=2, size=16)
    write_digits_folder(root, classes=[2], per_class=3, size=16)
    options = ImageFolderOptions.model_validate(
        {"path": root, "val_fraction": 0, "test_fraction": 0, "image": {"size": 16}})
    spec = build_images(options, seed=0).spec
    assert spec.extra["class_counts"] == [6, 2, 3]
    # 1/6, 1/2, 1/3 over their mean 1/3: exactly 0.5, 1.5, 1.0
    assert weights_of(spec) == [0.5, 1.5, 1.0]
    assert weights_of(spec, "focal") == [0.5, 1.5, 1.0]


def test_the_counts_are_the_training_split_s_after_the_carve(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "imbalanced", classes=[0], per_class=20, size=16)
    write_digits_folder(root, classes=[1], per_class=5, size=16)
    options = ImageFolderOptions.model_validate({"path": root, "image": {"size": 16}})
    bundle = build_images(options, seed=0)
    # test takes 3 of 20 and 1 of 5, validation 3 of 17 and 1 of 4: training keeps 14 and 3
    assert bundle.spec.extra["class_counts"] == [14, 3] == [bundle.train.targets.count(c) for c in (0, 1)]  # type: ignore[attr-defined]
    assert weights_of(bundle.spec) == pytest.approx([2 * 3 / 17, 2 * 14 / 17], abs=1e-6)


def test_tensor_datasets_record_their_counts_too() -> None:
    bundle = build_digits(DigitsOptions(), seed=0)
    targets = bundle.train.tensors[1]  # type: ignore[attr-defined]
    counts = torch.bincount(targets, minlength=10)
    assert bundle.spec.extra["class_counts"] == counts.tolist()
    inverse = 1 / counts.double()
    assert weights_of(bundle.spec) == pytest.approx((inverse / inverse.mean()).tolist(), rel=1e-6)


def test_auto_without_counts_names_the_fix() -> None:
    spec = DataSpec(name="mine", task="classification", input_shape=(4,), num_classes=3)
    with pytest.raises(ConfigError) as caught:
        weights_of(spec)
    text = str(caught.value)
    assert "auto needs the training split's images per class, which dataset 'mine' does not record" in text
    assert "training.loss.class_weights=[...], 3 values" in text


def test_auto_refuses_a_class_the_training_split_lacks() -> None:
    spec = DataSpec(name="mine", task="classification", input_shape=(4,), num_classes=3,
                    class_names=("a", "b", "c"), extra={"class_counts": [4, 0, 2]})
    with pytest.raises(ConfigError, match="auto cannot weigh class"):
        weights_of(spec)
