"""``kiln predict models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` against a real SQLite MLflow
registry: the registered version's model answers, the same numbers as its run directory."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from kiln.cli.main import main
from kiln.registry import register_run
from kiln.tracking.sync import sync_run
from tests.batch_predict.conftest import digits_csv

NOLOAD = "The ``noload`` loader strategy is deprecated"  # SQLAlchemy 2.x, inside MLflow's SQL store
pytestmark = pytest.mark.filterwarnings(f"ignore:{NOLOAD}:DeprecationWarning")


def test_predict_by_alias_and_version(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "runs" / trained_run.name))
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NOLOAD, category=DeprecationWarning)
        assert sync_run(run, uri).model_logged
        assert register_run(run, "predict-digits", alias="champion", uri=uri).version == 1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    digits_csv(tmp_path / "in.csv", 30)
    common = ["--input", str(tmp_path / "in.csv"), "--id-column", "id", "--backend", "torch", "--top-k", "3"]
    assert main(["predict", str(run), *common, "--output", str(tmp_path / "local.csv")]) == 0
    assert main(["predict", "models:/predict-digits@champion", *common, "--output", str(tmp_path / "alias.csv")]) == 0
    assert main(["predict", "models:/predict-digits/1", *common, "--output", str(tmp_path / "version.csv")]) == 0
    local = (tmp_path / "local.csv").read_bytes()
    assert (tmp_path / "alias.csv").read_bytes() == local == (tmp_path / "version.csv").read_bytes()
    assert main(["predict", "models:/predict-digits@nobody", *common, "--output", str(tmp_path / "x.csv")]) != 0
    assert "nobody" in capsys.readouterr().err
