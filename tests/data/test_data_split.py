"""The split helpers every dataset shares: carving, subset and train-only normalization."""

from __future__ import annotations

import pytest
import torch

from kiln.config.data_options import DigitsOptions
from kiln.data.spec import DataSpec
from kiln.data.split import carve, fit_normalization, make_bundle, split_data
from kiln.errors import DataError


def _data(n: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    # inputs are the sample ids, so every split says exactly which samples it holds
    return torch.arange(n, dtype=torch.float32).reshape(n, 1), torch.arange(n) % 3


def _ids(arrays: tuple[torch.Tensor, torch.Tensor] | None) -> list[int]:
    assert arrays is not None
    return [int(v) for v in arrays[0].flatten()]


def test_carve_is_deterministic_disjoint_sorted_and_seed_dependent() -> None:
    kept, carved = carve(50, 0.2, seed=3, what="validation")
    again = carve(50, 0.2, seed=3, what="validation")
    assert torch.equal(kept, again[0]) and torch.equal(carved, again[1])
    assert len(carved) == 10 and len(kept) == 40
    assert sorted(kept.tolist() + carved.tolist()) == list(range(50))
    assert kept.tolist() == sorted(kept.tolist())
    assert not torch.equal(carved, carve(50, 0.2, seed=4, what="validation")[1])


def test_carve_takes_at_least_one_sample_and_refuses_to_take_all() -> None:
    assert len(carve(5, 0.01, seed=0, what="validation")[1]) == 1
    assert len(carve(5, 0.0, seed=0, what="validation")[1]) == 0
    with pytest.raises(DataError, match="nothing would be left"):
        carve(1, 0.5, seed=0, what="validation")


def test_splits_add_up_and_only_validation_depends_on_the_seed() -> None:
    x, y = _data()
    cfg = DigitsOptions(val_fraction=0.2, test_fraction=0.1)
    a, b = split_data(x, y, cfg, seed=0), split_data(x, y, cfg, seed=1)
    assert (len(_ids(a.train)), len(_ids(a.val)), len(_ids(a.test))) == (72, 18, 10)
    assert sorted(_ids(a.train) + _ids(a.val) + _ids(a.test)) == list(range(100))
    assert _ids(a.test) == _ids(b.test)
    assert _ids(a.val) != _ids(b.val)
    assert torch.equal(a.train[1], (a.train[0].flatten() % 3).long())  # targets follow inputs


def test_given_splits_are_not_carved() -> None:
    x, y = _data()
    val, test = _data(7), _data(5)
    s = split_data(x, y, DigitsOptions(val_fraction=0.5, test_fraction=0.5), 0, val=val, test=test)
    assert _ids(s.train) == list(range(100))
    assert s.val is val and s.test is test


def test_subset_keeps_the_first_training_samples_after_the_val_carve() -> None:
    x, y = _data()
    full = split_data(x, y, DigitsOptions(val_fraction=0.2, test_fraction=0.0), seed=0)
    sub = split_data(x, y, DigitsOptions(val_fraction=0.2, test_fraction=0.0, subset=10), seed=0)
    assert _ids(sub.train) == _ids(full.train)[:10]
    assert _ids(sub.val) == _ids(full.val)
    with pytest.raises(DataError, match=r"data.subset=81 but the training split has only 80"):
        split_data(x, y, DigitsOptions(val_fraction=0.2, test_fraction=0.0, subset=81), seed=0)


def test_normalization_uses_training_statistics_only() -> None:
    x, y = _data()
    cfg = DigitsOptions(val_fraction=0.2, test_fraction=0.2)
    raw = split_data(x, y, cfg, 0)
    assert raw.test is not None
    spec = DataSpec(name="ids", task="classification", input_shape=(1,), num_classes=3)
    bundle = make_bundle(x, y, cfg, 0, spec)
    train_x = bundle.train.tensors[0]  # type: ignore[attr-defined]
    assert abs(float(train_x.mean())) < 1e-5
    assert abs(float(train_x.std(correction=0)) - 1) < 1e-5
    assert bundle.spec.mean == pytest.approx((float(raw.train[0].mean()),))
    assert bundle.spec.std == pytest.approx((float(raw.train[0].std(correction=0)),))
    mean, std = bundle.spec.mean[0], bundle.spec.std[0]
    test_x = bundle.test.tensors[0]  # type: ignore[union-attr]
    assert torch.allclose(test_x, (raw.test[0] - mean) / std)  # test never shapes the statistics


def test_per_feature_statistics_leave_constant_features_finite() -> None:
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    mean, std = fit_normalization(x, per_feature=True)
    assert mean.tolist() == [2.0, 5.0]
    assert std.tolist() == [1.0, 1.0]  # the constant column gets std 1, not 0
    scalar_mean, _ = fit_normalization(x, per_feature=False)
    assert scalar_mean.tolist() == [3.5]


def test_no_normalization_leaves_inputs_and_spec_untouched() -> None:
    x, y = _data(20)
    spec = DataSpec(name="ids", task="classification", input_shape=(1,), num_classes=3)
    cfg = DigitsOptions(normalize=False, val_fraction=0.0, test_fraction=0.0)
    bundle = make_bundle(x, y, cfg, 0, spec)
    assert torch.equal(bundle.train.tensors[0], x)  # type: ignore[attr-defined]
    assert bundle.spec.mean == () and bundle.val is None and bundle.test is None
