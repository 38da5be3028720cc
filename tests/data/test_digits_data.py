"""scikit-learn's digits: shapes, determinism for a seed, and splits that add up."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from kiln.config.data_options import DigitsOptions
from kiln.data.digits import build

N_DIGITS = 1797  # samples in sklearn.datasets.load_digits


def _tensors(ds: object) -> tuple[torch.Tensor, ...]:
    assert isinstance(ds, TensorDataset)
    return ds.tensors


def test_digits_spec_shapes_and_dtypes() -> None:
    bundle = build(DigitsOptions(), seed=0)
    assert bundle.spec.input_shape == (1, 8, 8)
    assert bundle.spec.num_classes == 10 and bundle.spec.task == "classification"
    assert bundle.spec.class_names == tuple("0123456789")
    assert len(bundle.spec.mean) == 1 and bundle.spec.std[0] > 0
    x, y = _tensors(bundle.train)
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))


def test_digits_splits_add_up_and_are_deterministic_for_a_seed() -> None:
    cfg = DigitsOptions(val_fraction=0.1, test_fraction=0.2)
    a, b, other = build(cfg, seed=7), build(cfg, seed=7), build(cfg, seed=8)
    assert len(a.test) == round(N_DIGITS * 0.2)  # type: ignore[arg-type]
    assert len(a.train) + len(a.val) + len(a.test) == N_DIGITS  # type: ignore[arg-type]
    for split in ("train", "val", "test"):
        for t1, t2 in zip(_tensors(getattr(a, split)), _tensors(getattr(b, split)), strict=True):
            assert torch.equal(t1, t2)
    # the test set is the same whatever the run seed; validation is not
    assert torch.equal(_tensors(a.test)[1], _tensors(other.test)[1])
    assert not torch.equal(_tensors(a.val)[1], _tensors(other.val)[1])


def test_digits_without_normalization_are_scaled_to_unit_range() -> None:
    bundle = build(DigitsOptions(normalize=False, subset=100), seed=0)
    x, _ = _tensors(bundle.train)
    assert len(x) == 100
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert bundle.spec.mean == () and bundle.spec.extra["input_scale"] == 1 / 16


def test_the_digits_are_scikit_learns_own_read_without_importing_sklearn_datasets() -> None:
    """The file read directly gives load_digits' arrays exactly; a fresh interpreter building the
    dataset never imports sklearn.datasets (3 s of a short run's start)."""
    import subprocess
    import sys

    import numpy as np
    from sklearn.datasets import load_digits

    from kiln.data.digits import load_digits_arrays

    images, labels = load_digits_arrays()
    want_images, want_labels = load_digits(return_X_y=True)
    assert images.dtype == np.float64 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    probe = ("import sys; from kiln.config.data_options import DigitsOptions; from kiln.data.digits import build; "
             "build(DigitsOptions(), seed=0); print('sklearn.datasets' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
