"""Adding a model: one module (tests/plugins/example_model.py: options model and factory) and one
registration.

Once registered, ``model.name`` picks it and its options are keys of ``model:``, checked like a
built-in model's; ``kiln models`` lists them. kiln's contract suite checks the factory, as a user
checks their own model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from torch import nn

import kiln
from kiln.cli.models_cmd import run_models
from kiln.data import DataSpec
from kiln.errors import ConfigError
from kiln.models import MODELS, ModelFactory
from kiln.testing import ModelContract, tiny_config
from kiln.train import Trainer
from tests.plugins import example_model
from tests.plugins.example_model import WideOptions


@pytest.fixture
def wide_mlp() -> Iterator[str]:
    """The registration (a user's package does this once, in the module that sets kiln up)."""
    MODELS.register("wide_mlp", "tests.plugins.example_model:build", "one wide hidden layer", options=WideOptions)
    yield "wide_mlp"
    MODELS.unregister("wide_mlp")


def test_a_registered_model_is_chosen_by_name_and_trained(wide_mlp: str, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model.name=wide_mlp", "model.width=24")
    assert cfg.model == WideOptions(width=24)  # the switch from the tiny mlp dropped its `hidden`
    result = Trainer(cfg, quiet=True).fit()
    assert result.status == "completed"
    # the model package rebuilds it from its stored `model:` section: digits are 8x8 in, 10 out
    assert parameters(kiln.load_model(result.run_dir)) == 64 * 24 + 24 + 24 * 10 + 10


def test_its_options_are_checked_like_a_built_in_models(wide_mlp: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.hidden: not an option of model 'wide_mlp' \(received \[16\]\); "
                                          r"wide_mlp takes: width, dropout\. model\.hidden=\[16\] needs model\.name cnn or mlp"):
        tiny_config(tmp_path, "model.name=wide_mlp", "model.hidden=[16]")
    with pytest.raises(ConfigError, match=r"model\.width: Input should be greater than or equal to 1 \(received 0\)"):
        tiny_config(tmp_path, "model.name=wide_mlp", "model.width=0")


def test_the_knobs_it_reads_are_its_options(wide_mlp: str) -> None:
    """What the export's model card lists as the model's settings (kiln.export.record)."""
    (entry,) = [e for e in MODELS if e.name == wide_mlp]
    assert entry.params == ("width", "dropout")


def test_kiln_models_lists_its_options(wide_mlp: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_models(None)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "wide_mlp" in out and "width=64" in out and "units of the one hidden layer" in out


def test_without_the_registration_the_name_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'wide_mlp'\. Known: "):
        tiny_config(tmp_path, "model.name=wide_mlp")


def test_or_named_by_import_path_with_its_options_validated(tmp_path: Path) -> None:
    """Without registering: ``model.target`` names the Entry holding the factory and options model."""
    cfg = tiny_config(tmp_path, "model.target=tests.plugins.example_model:WIDE_MLP", "model.options={width: 12}")
    result = Trainer(cfg, quiet=True).fit()
    assert parameters(kiln.load_model(result.run_dir)) == 64 * 12 + 12 + 12 * 10 + 10
    # kiln imports a target only to build it, so its options are checked then, before training
    bad = tiny_config(tmp_path, "model.target=tests.plugins.example_model:WIDE_MLP", "model.options={widht: 12}")
    with pytest.raises(ConfigError, match=r"model\.options\.widht: unknown key\. Did you mean 'model\.options\.width'\?"):
        Trainer(bad, quiet=True).fit()


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class TestWideMlp(ModelContract):
    """The contract suite against the plugin itself: what a user writes for their own model."""

    @pytest.fixture
    def build(self) -> ModelFactory[WideOptions]:
        return example_model.build

    @pytest.fixture
    def options(self) -> WideOptions:
        return WideOptions(width=8, dropout=0.5)

    @pytest.fixture
    def spec(self) -> DataSpec:
        return DataSpec("toy", "classification", (1, 8, 8), 10)
