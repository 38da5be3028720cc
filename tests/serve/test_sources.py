"""What ``kiln serve`` accepts besides a run directory: an export file and a ``models:/`` URI."""

from __future__ import annotations

import warnings
from pathlib import Path

import httpx
import pytest

from kiln.errors import ServeError
from kiln.registry.register import register_run
from kiln.serve import prepare_model
from kiln.testing import tiny_config
from kiln.train import Trainer
from tests.serve.conftest import Server, running
from tests.serve.helpers import digits_inputs

NOLOAD = "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"


def test_an_export_file_is_served_as_is(onnx_server: Server, served_run: Path) -> None:
    # onnx_server has created models/model.onnx by now
    path = served_run / "models" / "model.onnx"
    source = prepare_model(path)
    assert source.export_file == path.resolve() and source.package_dir == (served_run / "models").resolve()
    assert prepare_model(path, "torch").export_file is None


def test_unknown_backend_is_named() -> None:
    with pytest.raises(ServeError, match="allowed: onnx, torch"):
        prepare_model("runs/none", "tensorrt")


@pytest.mark.slow
@pytest.mark.filterwarnings(NOLOAD)
def test_registry_alias_is_resolved_and_reported(tmp_path: Path) -> None:
    output = tmp_path / "runs"
    uri = f"sqlite:///{(output / 'mlflow.db').resolve()}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The ``noload`` loader strategy", category=DeprecationWarning)
        result = Trainer(tiny_config(output, f"tracking.uri={uri}", "tracking.system_metrics=false",
                                     "checkpoint.enabled=false", backends=("jsonl", "mlflow")), quiet=True).fit()
        register_run(result.run_dir, "served-digits", alias="production", uri=uri)
    with running("models:/served-digits@production", tmp_path / "server.log", "--backend", "torch",
                 env={"MLFLOW_TRACKING_URI": uri}) as server:
        meta = httpx.get(f"{server.url}/metadata").json()
        answer = httpx.post(f"{server.url}/predict", json={"instances": digits_inputs(1).tolist()}).json()
    assert meta["name"] == "served-digits" and meta["version"] == "1"
    assert meta["registry"]["uri"] == "models:/served-digits@production"
    assert meta["run"] == result.run_dir.name
    assert answer["model"] == {"name": "served-digits", "version": "1", "backend": "torch"}
