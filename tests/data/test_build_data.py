"""build_data: catalog datasets, a user's builder by import path, and the bundle contract."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from kiln.config.data_options import SyntheticConfig, SyntheticOptions, TargetData
from kiln.data import DataBundle, DataSpec, build_data, check_bundle
from kiln.errors import ConfigError, DataError

MODULE = "kiln_test_user_data"
USER_DATA = """
import torch
from torch.utils.data import TensorDataset

from kiln.data import DataBundle, DataSpec


def build(n=8, width=3, shape=None):
    x, y = torch.randn(n, width), torch.arange(n) % 2
    spec = DataSpec(name="mine", task="binary", input_shape=shape or (width,), num_classes=2)
    return DataBundle(train=TensorDataset(x, y), val=None, test=None, spec=spec)


def empty():
    spec = DataSpec(name="mine", task="regression", input_shape=(1,), num_classes=1)
    return DataBundle(train=TensorDataset(torch.zeros(0, 1)), val=None, test=None, spec=spec)


def not_a_bundle():
    return {"train": [1, 2, 3]}
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(USER_DATA), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield MODULE
    sys.modules.pop(MODULE, None)


def test_catalog_dataset_is_built_by_name() -> None:
    bundle = build_data(
        SyntheticOptions(synthetic=SyntheticConfig(n_samples=50)), seed=0
    )
    assert isinstance(bundle, DataBundle) and bundle.spec.name == "synthetic"


def test_user_target_is_called_with_options(user_module: str) -> None:
    cfg = TargetData(target=f"{user_module}:build", options={"n": 6, "width": 4})
    bundle = build_data(cfg, seed=0)
    assert bundle.spec.name == "mine" and len(bundle.train) == 6  # type: ignore[arg-type]
    assert bundle.train[0][0].shape == (4,)


def test_user_target_returning_something_else_is_a_data_error(user_module: str) -> None:
    cfg = TargetData(target=f"{user_module}:not_a_bundle")
    with pytest.raises(
        DataError, match=r"not_a_bundle' returned dict .*expected kiln\.data\.DataBundle"
    ):
        build_data(cfg, seed=0)


def test_options_that_do_not_fit_the_builder_are_a_config_error(user_module: str) -> None:
    cfg = TargetData(target=f"{user_module}:build", options={"rows": 5})
    with pytest.raises(ConfigError, match=r"data\.options .*rows.* do not fit .*\(n=8, width=3"):
        build_data(cfg, seed=0)


def test_unimportable_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        build_data(TargetData(target="no_such_module_xyz:build"), seed=0)


def test_bundles_that_break_the_contract_are_data_errors(user_module: str) -> None:
    wrong_shape = TargetData(target=f"{user_module}:build", options={"shape": (1, 3)})
    with pytest.raises(
        DataError, match=r"train\[0\] input is \[3\]; spec.input_shape says \[1, 3\]"
    ):
        build_data(wrong_shape, seed=0)
    with pytest.raises(DataError, match="train is empty"):
        build_data(TargetData(target=f"{user_module}:empty"), seed=0)


def test_every_spec_problem_is_reported_at_once() -> None:
    spec = DataSpec(name="bad", task="binary", input_shape=(2,), num_classes=3, std=(0.0,))
    data = TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(DataError) as info:
        check_bundle(DataBundle(train=data, val=None, test=data, spec=spec), "dataset 'bad'")
    message = str(info.value)
    assert message.startswith("dataset 'bad' gave an invalid DataBundle:")
    assert "spec.num_classes is 3; binary needs exactly 2" in message
    assert (
        "spec.mean/std have 0/1 values" in message and "spec.std (0.0,) must be positive" in message
    )


def test_importing_kiln_config_and_data_does_not_import_torch() -> None:
    code = "import sys, kiln.config, kiln.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
