"""Exact metric accumulators: weighted means, counts, and the state that resumes them."""

from __future__ import annotations

import math

import pytest
import torch

from kiln.tasks.meters import ClassificationMeter, RegressionMeter, Sums


def test_sums_weighted_mean_in_float64() -> None:
    s = Sums("a")
    assert s.names == ("a",)
    assert math.isnan(s.mean("a"))  # nothing counted yet
    s.add("a", torch.tensor(1.5, dtype=torch.float32), weight=2.0)
    s.add("a", torch.tensor(0.25), weight=4.0)
    s.add("a", torch.tensor(1.0))
    assert s.sums["a"].dtype == torch.float64
    assert math.isnan(s.mean("a"))  # count is still 0
    s.count = 4
    assert s.mean("a") == (3.0 + 1.0 + 1.0) / 4
    assert math.isnan(s.mean("missing"))


def test_sums_copy_the_first_value() -> None:
    s = Sums("a")
    v = torch.tensor(2.0, dtype=torch.float64)
    s.add("a", v)
    s.add("a", torch.tensor(3.0))
    assert v.item() == 2.0  # the caller's tensor is not summed into


def test_state_round_trip() -> None:
    m = ClassificationMeter()
    m.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), torch.tensor(0.5))
    state = m.state_dict()
    assert state["count"] == 2
    assert state["sums"]["loss"].item() == 1.0 and state["sums"]["correct"].item() == 1.0
    other = ClassificationMeter()
    other.load_state_dict(state)
    state["sums"]["loss"].add_(100.0)  # a copy was loaded, not the caller's tensors
    assert other.count == 2
    assert other.compute() == {"loss": 0.5, "accuracy": 0.5}


def test_classification_meter_multiclass() -> None:
    m = ClassificationMeter()
    assert m.binary is False and m.names == ("loss", "correct")
    m.update(torch.tensor([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), torch.tensor([1, 1, 2]),
             torch.tensor(0.3))
    m.update(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[2]]), torch.tensor(1.1))
    assert m.count == 4
    assert m.compute() == {"loss": pytest.approx((0.3 * 3 + 1.1) / 4), "accuracy": 0.75}


def test_classification_meter_binary_thresholds_at_zero() -> None:
    m = ClassificationMeter(binary=True)
    assert m.binary is True
    m.update(torch.tensor([[0.5], [0.0], [-0.1], [3.0]]), torch.tensor([1, 0, 0, 0]), torch.tensor(2.0))
    assert m.compute() == {"loss": 2.0, "accuracy": 0.75}


def test_regression_meter_mae_and_rmse_per_sample() -> None:
    m = RegressionMeter()
    assert m.names == ("loss", "abs", "sq")
    # two samples of two outputs: errors (1, -3) and (0, 2)
    m.update(torch.tensor([[1.0, 0.0], [2.0, 2.0]]), torch.tensor([[0.0, 3.0], [2.0, 0.0]], dtype=torch.float64),
             torch.tensor(4.0))
    m.update(torch.tensor([5.0]), torch.tensor([1.0]), torch.tensor(1.0))  # one sample, error 4
    assert m.count == 3
    mae = ((1 + 3) / 2 + (0 + 2) / 2 + 4) / 3
    rmse = (((1 + 9) / 2 + (0 + 4) / 2 + 16) / 3) ** 0.5
    assert m.compute() == {"loss": pytest.approx(3.0), "mae": pytest.approx(mae), "rmse": pytest.approx(rmse)}
