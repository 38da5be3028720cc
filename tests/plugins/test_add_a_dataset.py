"""Adding a dataset: one module (tests/plugins/example_dataset.py: options model and factory) and
one registration.

Once registered, ``data.name`` picks it and its options are keys of ``data:``, checked like a
built-in dataset's; ``kiln datasets`` lists them. kiln's contract suite checks the factory, as a
user checks their own dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.cli.models_cmd import run_datasets
from kiln.data import DATASETS, DatasetFactory, build_data
from kiln.errors import ConfigError
from kiln.testing import DatasetContract, tiny_config
from kiln.train import Trainer
from tests.plugins import example_dataset
from tests.plugins.example_dataset import RingsOptions


@pytest.fixture
def rings() -> Iterator[str]:
    """The registration (a user's package does this once, in the module that sets kiln up)."""
    DATASETS.register("rings", "tests.plugins.example_dataset:build", "two noisy rings", options=RingsOptions)
    yield "rings"
    DATASETS.unregister("rings")


def test_a_registered_dataset_is_chosen_by_name_and_trained_on(rings: str, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "data.name=rings", "data.noise=0.05", "data.val_fraction=0.25")
    assert cfg.data == RingsOptions(noise=0.05, val_fraction=0.25)
    data = build_data(cfg.data, cfg.run.seed)
    assert (data.spec.name, data.spec.task, data.spec.input_shape) == ("rings", "binary", (2,))
    assert (len(data.train), len(data.val), len(data.test)) == (240, 80, 80)  # type: ignore[arg-type]
    result = Trainer(cfg, quiet=True).fit()
    assert result.status == "completed"


def test_its_options_are_checked_like_a_built_in_datasets(rings: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.path: not an option of dataset 'rings' \(received 'x\.csv'\); "
                                          r"rings takes: num_workers, .*, n_samples, noise\. data\.path=x\.csv needs "
                                          r"data\.name csv, fashion_mnist, image_folder, mnist or text"):
        tiny_config(tmp_path, "data.name=rings", "data.path=x.csv")
    with pytest.raises(ConfigError, match=r"data\.n_samples: Input should be greater than or equal to 4"):
        tiny_config(tmp_path, "data.name=rings", "data.n_samples=2")


def test_kiln_datasets_lists_its_options(rings: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_datasets(None)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "rings" in out and "noise=0.1" in out and "std of the radial noise" in out


class TestRings(DatasetContract):
    """The contract suite against the plugin itself: what a user writes for their own dataset."""

    @pytest.fixture
    def build(self) -> DatasetFactory[RingsOptions]:
        return example_dataset.build

    @pytest.fixture
    def options(self) -> RingsOptions:
        return RingsOptions(n_samples=120)
