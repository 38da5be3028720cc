"""Every YAML file in configs/ loads and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_configs() -> None:
    assert any(p.name == "digits_mlp.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.run.name


def test_reference_networks_are_as_specified() -> None:
    root = CONFIGS[0].parent
    mlp = load_config(root / "mnist_mlp.yaml")
    assert (mlp.model.hidden, mlp.model.dropout, mlp.training.l2) == ([256, 128, 64], 0.3, 1e-3)
    assert (mlp.data.subset, mlp.training.batch_size, mlp.training.epochs) == (5000, 128, 50)
    assert mlp.training.early_stopping is not None and mlp.training.early_stopping.patience == 10
    enhanced = load_config(root / "mnist_cnn_enhanced.yaml")
    assert (enhanced.model.filters, enhanced.model.conv_dropout, enhanced.model.hidden, enhanced.model.dropout) == ([64], 0.25, [128], 0.5)
    optimized = load_config(root / "mnist_cnn_optimized.yaml")
    assert (optimized.training.lr, optimized.training.batch_size, optimized.model.filters) == (5e-4, 64, [64])
    for name in ("mnist_cnn_baseline", "mnist_cnn_enhanced", "mnist_cnn_optimized"):
        cfg = load_config(root / f"{name}.yaml")
        assert (cfg.training.epochs, cfg.data.val_fraction) == (5, 0.1)
