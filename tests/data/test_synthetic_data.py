"""Synthetic data: deterministic for a seed, the right shapes and tasks, and learnable."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from kiln.config.data_options import SyntheticConfig, SyntheticOptions
from kiln.data.synthetic import build
from kiln.errors import ConfigError


def _cfg(**synthetic: Any) -> SyntheticOptions:
    return SyntheticOptions(synthetic=SyntheticConfig(**{"n_samples": 400, **synthetic}))


def _tensors(ds: object) -> tuple[torch.Tensor, ...]:
    assert isinstance(ds, TensorDataset)
    return ds.tensors


def test_same_seed_same_data_other_seed_other_data() -> None:
    cfg = _cfg(input_shape=[3, 4], num_classes=5)
    a, b, c = build(cfg, 1), build(cfg, 1), build(cfg, 2)
    assert torch.equal(_tensors(a.train)[0], _tensors(b.train)[0])
    assert torch.equal(_tensors(a.test)[1], _tensors(b.test)[1])
    assert not torch.equal(_tensors(a.train)[0], _tensors(c.train)[0])


def test_classification_shapes_labels_and_split_sizes() -> None:
    bundle = build(_cfg(input_shape=[3, 4], num_classes=5), 0)
    assert bundle.spec.task == "classification" and bundle.spec.input_shape == (3, 4)
    assert bundle.spec.class_names == ("0", "1", "2", "3", "4")
    x, y = _tensors(bundle.train)
    assert x.shape[1:] == (3, 4) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 400  # type: ignore[arg-type]
    all_labels = torch.cat([y, _tensors(bundle.val)[1], _tensors(bundle.test)[1]])
    assert torch.bincount(all_labels).tolist() == [80] * 5  # balanced by construction


def test_classes_are_learnable_by_nearest_centroid() -> None:
    bundle = build(_cfg(input_shape=[16], num_classes=4, noise=0.5), 0)
    x, y = _tensors(bundle.train)
    centroids = torch.stack([x[y == k].mean(0) for k in range(4)])
    test_x, test_y = _tensors(bundle.test)
    predicted = torch.cdist(test_x, centroids).argmin(1)
    assert (predicted == test_y).float().mean() > 0.95


def test_two_classes_are_binary_with_integer_labels() -> None:
    bundle = build(_cfg(input_shape=[8], num_classes=2), 0)
    assert bundle.spec.task == "binary" and bundle.spec.num_classes == 2
    _, y = _tensors(bundle.train)
    assert y.dtype == torch.int64 and set(y.tolist()) == {0, 1}


def test_one_class_is_a_learnable_regression() -> None:
    bundle = build(_cfg(input_shape=[6], num_classes=1, noise=0.1), 0)
    assert bundle.spec.task == "regression" and bundle.spec.class_names == ()
    x, y = _tensors(bundle.train)
    assert y.shape == (len(x), 1) and y.dtype == torch.float32
    ones = torch.ones(len(x), 1)
    solution = torch.linalg.lstsq(torch.cat([x, ones], 1), y).solution
    test_x, test_y = _tensors(bundle.test)
    residual = torch.cat([test_x, torch.ones(len(test_x), 1)], 1) @ solution - test_y
    assert float(residual.pow(2).mean()) < 0.1 * float(test_y.var())


def test_bad_input_shape_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"input_shape must be .*got \[3, 0\]"):
        build(_cfg(input_shape=[3, 0]), 0)
