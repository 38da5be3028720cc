"""Trained runs for ``kiln predict``: the digits MLP (image-shaped inputs, no feature names, with a
parity-checked ONNX export), tabular runs with named features (binary and regression), and a
small image_folder CNN; each trained once per session, in-process, in a few seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kiln.testing import tiny_config
from kiln.train import Trainer


def _train(output: Path, *overrides: str) -> Path:
    config = tiny_config(output, "checkpoint.enabled=false", *overrides, backends=("jsonl",))
    return Trainer(config, quiet=True).fit().run_dir


@pytest.fixture(scope="session")
def digits_onnx_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared digits run, copied, with a passing ONNX export (the default backend then)."""
    from kiln.export.run import ExportOptions, export_run

    copy = tmp_path_factory.mktemp("predict-onnx") / trained_run.name
    shutil.copytree(trained_run, copy)
    assert export_run(copy, ExportOptions(formats=("onnx",), mlflow=False)).passed
    return copy


def digits_inputs(rows: int) -> np.ndarray:
    """Digit images in the dataset's units (pixels scaled to 0..1), ``[rows, 64]``."""
    from sklearn.datasets import load_digits

    data = load_digits().data / 16.0
    return np.resize(data, (rows, 64))


def cancer_table() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    loaded = load_breast_cancer(as_frame=True)
    frame = loaded.frame.rename(columns={"target": "diagnosis"})
    frame["diagnosis"] = np.where(frame["diagnosis"] == 1, "benign", "malignant")
    return frame


@pytest.fixture(scope="session")
def cancer_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary tabular model with 30 named features (their names hold spaces)."""
    root = tmp_path_factory.mktemp("predict-cancer")
    cancer_table().to_csv(root / "cancer.csv", index=False)
    return _train(root / "runs", "data.name=csv", f"data.path={root / 'cancer.csv'}",
                  "data.target_column=diagnosis", "training.epochs=2")


@pytest.fixture(scope="session")
def regression_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_diabetes

    root = tmp_path_factory.mktemp("predict-regression")
    load_diabetes(as_frame=True).frame.to_csv(root / "diabetes.csv", index=False)
    return _train(root / "runs", "data.name=csv", f"data.path={root / 'diabetes.csv'}",
                  "data.task=regression", "training.epochs=2")


@pytest.fixture(scope="session")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN on 3 classes of 16x16 digit photos (saved preprocessing: resize, crop, mean/std)."""
    from kiln.testing.images import write_digits_folder

    root = tmp_path_factory.mktemp("predict-images")
    folder = write_digits_folder(root / "photos", classes=3, per_class=10, size=20, formats=("png", "jpg"))
    return _train(root / "runs", "data.name=image_folder", f"data.path={folder}", "data.image.size=16",
                  "model.name=cnn", "model.filters=[4]", "model.hidden=[8]", "training.epochs=1",
                  "training.batch_size=8")


def reference(run: Path, x: np.ndarray) -> np.ndarray:
    """The eager model's probabilities for ``x`` in dataset units: the package's normalization,
    then the torch module, then softmax or sigmoid; what every path must give."""
    import torch

    from kiln.models.package import load_package
    from kiln.serve.inputs import Preprocessor

    package = load_package(run)
    batch = Preprocessor(package.spec, 1 << 30).normalize(
        np.asarray(x, dtype=np.float64).reshape(len(x), *package.spec.input_shape))
    with torch.no_grad():
        logits = package.model(torch.from_numpy(batch)).double()
    if package.spec.task == "binary":
        positive = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - positive, positive], 1).numpy()
    if package.spec.task == "regression":
        return logits.numpy()
    return torch.softmax(logits, 1).numpy()


def digits_csv(path: Path, rows: int, ids: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame(digits_inputs(rows), columns=[f"p{i}" for i in range(64)])
    if ids:
        frame.insert(0, "id", [f"{i:06d}" for i in range(rows)])  # leading zeros: kept as text
    frame.to_csv(path, index=False)
    return frame
