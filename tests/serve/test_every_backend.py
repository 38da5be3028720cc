"""Every entry of SERVE_BACKENDS, prepared and loaded the way ``kiln serve`` does it (in-process
here; tests/serve/test_predict.py serves them over HTTP), answers what ``kiln.load_model`` does.
The cases come from the catalog, so a backend registered later is checked without a line here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from kiln.errors import ServeError
from kiln.serve import load_served_model, prepare_model
from kiln.serve.backends import DEFAULT_BACKEND, SERVE_BACKENDS
from tests.serve.helpers import digits_inputs, expected_probabilities


@pytest.fixture(scope="module")
def run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the run without exports, so a backend that needs one creates it here."""
    copy = tmp_path_factory.mktemp("every-backend") / trained_run.name
    shutil.copytree(trained_run, copy)
    return copy


@pytest.mark.parametrize("name", SERVE_BACKENDS.names())
def test_every_backend_predicts_what_load_model_does(name: str, run: Path) -> None:
    served = load_served_model(prepare_model(run, name), threads=1)
    assert served.backend.name == name and served.source.backend == name
    raw = digits_inputs(7, seed=3)
    x = ((raw - np.asarray(served.spec.mean)) / np.asarray(served.spec.std)).astype(np.float32)
    np.testing.assert_allclose(served.backend.predict(x), expected_probabilities(run, raw), rtol=1e-4, atol=1e-5)
    if served.source.export_file is None:  # the package itself: no export vouches for it
        assert served.export_record is None
    else:  # the export it runs, with the parity record that vouches for it
        assert served.export_record is not None and served.export_record["passed"]
        assert served.export_record["file"] == served.source.export_file.name


def test_the_catalog_names_the_backends_kiln_serve_documents() -> None:
    assert SERVE_BACKENDS.names() == ["onnx", "torch"] and DEFAULT_BACKEND == "onnx"


def test_a_misspelt_backend_gets_a_did_you_mean() -> None:
    with pytest.raises(ServeError, match=r"unknown backend 'onx'; allowed: onnx, torch\. Did you mean 'onnx'\?"):
        prepare_model("runs/none", "onx")
