"""Reference statistics saved by training, checked on real tiny runs against the same statistics
recomputed independently from the rebuilt validation split and the loaded model; and packages
without them (older ones) or with damaged ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import kiln
from kiln.config.loader import load_config
from kiln.data.build import build_data
from kiln.errors import ModelError
from kiln.models.package import load_package
from kiln.models.reference import REFERENCE, Bins, quantile_bins, read_reference
from tests.batch_predict.conftest import regression_run  # noqa: F401  (a fixture, reused)


def _validation(run: Path) -> tuple[torch.Tensor, np.ndarray]:
    """The run's validation inputs as the model takes them, and in the dataset's units."""
    config = load_config(run / "config.yaml")
    bundle = build_data(config.data, config.run.seed)
    assert bundle.val is not None
    x = torch.stack([bundle.val[i][0] for i in range(len(bundle.val))])  # type: ignore[arg-type]
    spec = bundle.spec
    mean = np.asarray(spec.mean).reshape(-1, *([1] * (x.dim() - 2)))
    std = np.asarray(spec.std).reshape(mean.shape)
    return x, x.double().numpy() * std + mean


def _same(saved: Bins | None, values: np.ndarray) -> None:
    """``saved`` are the bins of ``values`` (recomputed in float64 here, where training
    summarizes in float32 as the server does: the edges agree to float32's precision)."""
    expected = quantile_bins(values)
    assert saved is not None and saved.proportions == expected.proportions
    np.testing.assert_allclose(saved.edges, expected.edges, rtol=1e-5)


def test_training_saves_the_validation_split_statistics_in_the_dataset_units(trained_run: Path) -> None:
    saved = json.loads((trained_run / "models" / REFERENCE).read_text())
    assert saved["version"] == 1 and saved["split"] == "validation" and saved["kind"] == "image"
    reference = read_reference(trained_run / "models")
    assert reference is not None
    x, raw = _validation(trained_run)
    assert reference.samples == len(x)
    assert sorted(reference.inputs) == ["brightness", "channel_mean_0", "channel_std_0"]
    means = raw.reshape(len(raw), -1).mean(axis=1)  # pixels in 0..1, before normalization
    _same(reference.inputs["channel_mean_0"], means)
    assert all(0.0 <= e <= 1.0 for e in reference.inputs["channel_mean_0"].edges)
    _same(reference.inputs["channel_std_0"], raw.reshape(len(raw), -1).std(axis=1))
    _same(reference.inputs["brightness"], means)
    with torch.no_grad():
        probabilities = torch.softmax(kiln.load_model(trained_run)(x), dim=1).numpy()
    predicted = probabilities.argmax(axis=1)
    assert reference.classes == tuple(str(i) for i in range(10))
    np.testing.assert_allclose(reference.class_proportions, np.bincount(predicted, minlength=10) / len(x))
    assert reference.confidence is not None and reference.prediction is None
    _same(reference.confidence, probabilities.max(axis=1))


def test_a_regression_model_gets_its_predicted_values_binned_and_its_feature_names(regression_run: Path) -> None:  # noqa: F811
    reference = read_reference(regression_run / "models")
    assert reference is not None and reference.kind == "tabular"
    x, raw = _validation(regression_run)
    names = load_package(regression_run).spec.extra["feature_names"]
    assert reference.names == {f"feature_{i}": n for i, n in enumerate(names)}
    _same(reference.inputs["feature_2"], raw[:, 2])
    assert reference.classes == () and reference.confidence is None and reference.prediction is not None
    with torch.no_grad():
        values = kiln.load_model(regression_run)(x).numpy()[:, 0]
    _same(reference.prediction, values)


def test_a_package_without_reference_loads_and_has_none(trained_run: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    (old / "models" / REFERENCE).unlink()
    assert read_reference(old / "models") is None
    assert load_package(old).spec.task == "classification"


@pytest.mark.parametrize(("text", "message"), [
    ("{", "is not valid reference statistics"),
    ('{"version": 1, "split": "validation"}', "is not valid reference statistics .KeyError"),
    ('{"version": 99}', "has version 99, newer than this kiln understands"),
])
def test_a_damaged_or_newer_reference_is_an_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / REFERENCE
    path.write_text(text)
    with pytest.raises(ModelError, match=message) as raised:
        read_reference(tmp_path)
    assert str(path) in str(raised.value)
