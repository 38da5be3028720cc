"""Every entry of the MODELS catalog passes kiln's model contract (kiln.testing.ModelContract),
with its default options and with some knobs turned.

The cases come from the catalog itself: an entry registered without a case here fails
``test_every_entry_has_a_case``.
"""

from __future__ import annotations

from typing import Any

import pytest

from kiln.config.model_options import (
    CnnOptions,
    MlpOptions,
    TimmOptions,
    TorchvisionOptions,
    TransformerOptions,
)
from kiln.data import DataSpec
from kiln.models import MODELS
from kiln.testing import ModelContract

IMAGES = DataSpec("images", "classification", (1, 8, 8), 10)
TABLE = DataSpec("table", "regression", (5,), 1)
CHARS = DataSpec("chars", "language_modeling", (16,), 11, input_dtype="int64")
RGB = DataSpec("photos", "classification", (3, 32, 32), 3)

CASES: dict[str, list[tuple[Any, DataSpec]]] = {
    "mlp": [(MlpOptions(), IMAGES), (MlpOptions(hidden=[8, 8], dropout=0.5, batch_norm=True), TABLE)],
    "cnn": [(CnnOptions(), IMAGES), (CnnOptions(filters=[4, 4], pool="none", batch_norm=True, hidden=[]), IMAGES)],
    "transformer": [
        (TransformerOptions(), CHARS),
        (TransformerOptions(d_model=16, n_heads=2, n_layers=1, dropout=0.2, tie_weights=False, block_size=32), CHARS),
    ],
    "torchvision": [(TorchvisionOptions(arch="resnet18"), RGB),
                    (TorchvisionOptions(arch="mobilenet_v3_small", freeze="backbone"), RGB)],
    "timm": [(TimmOptions(arch="test_resnet"), RGB), (TimmOptions(arch="resnet10t", freeze="backbone"), RGB)],
}


def test_every_entry_has_a_case() -> None:
    assert sorted(CASES) == MODELS.names()


def cases() -> list[Any]:
    return [pytest.param((name, i), id=f"{name}-{i}") for name in MODELS.names() for i in range(len(CASES.get(name, [None])))]


class TestEveryCatalogModel(ModelContract):
    @pytest.fixture(params=cases())
    def case(self, request: pytest.FixtureRequest) -> tuple[str, int]:
        name, i = request.param
        if name not in CASES:
            pytest.fail(f"model {name!r} has no case in CASES")
        return name, i

    @pytest.fixture
    def build(self, case: tuple[str, int]) -> object:
        return MODELS.get(case[0])

    @pytest.fixture
    def options(self, case: tuple[str, int]) -> Any:
        return CASES[case[0]][case[1]][0]

    @pytest.fixture
    def spec(self, case: tuple[str, int]) -> DataSpec:
        return CASES[case[0]][case[1]][1]
