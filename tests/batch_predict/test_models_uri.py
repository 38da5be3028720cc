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


def registered(given: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of run ``given`` synced to a fresh SQLite MLflow store (the tracking URI from now
    on) and registered as ``name`` version 1, alias ``champion``; the copy's path."""
    run = Path(shutil.copytree(given, tmp_path / "runs" / given.name))
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NOLOAD, category=DeprecationWarning)
        assert sync_run(run, uri).model_logged
        assert register_run(run, name, alias="champion", uri=uri).version == 1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return run


def test_predict_by_alias_and_version(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = registered(trained_run, tmp_path, "predict-digits", monkeypatch)
    digits_csv(tmp_path / "in.csv", 30)
    common = ["--input", str(tmp_path / "in.csv"), "--id-column", "id", "--backend", "torch", "--top-k", "3"]
    assert main(["predict", str(run), *common, "--output", str(tmp_path / "local.csv")]) == 0
    assert main(["predict", "models:/predict-digits@champion", *common, "--output", str(tmp_path / "alias.csv")]) == 0
    assert main(["predict", "models:/predict-digits/1", *common, "--output", str(tmp_path / "version.csv")]) == 0
    local = (tmp_path / "local.csv").read_bytes()
    assert (tmp_path / "alias.csv").read_bytes() == local == (tmp_path / "version.csv").read_bytes()
    assert main(["predict", "models:/predict-digits@nobody", *common, "--output", str(tmp_path / "x.csv")]) != 0
    assert "nobody" in capsys.readouterr().err


@pytest.mark.parametrize("exported", [False, True], ids=["torch", "onnx"])
def test_a_models_uri_without_backend_is_resolved_once(trained_run: Path, digits_onnx_run: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], exported: bool) -> None:
    """Choosing the default backend reads the resolved package: the registry is asked once which
    version the alias names (every SQL statement the real SQLite store runs is counted), so an
    alias moved meanwhile cannot give the backend of one version and the weights of another."""
    import re
    from collections import Counter

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    given = digits_onnx_run if exported else trained_run  # with a verified ONNX export, or none
    registered(given, tmp_path, "predict-once", monkeypatch)
    digits_csv(tmp_path / "in.csv", 10)
    read: Counter[str] = Counter()

    def count(conn: object, cursor: object, statement: str, *rest: object) -> None:
        read.update(re.findall(r"FROM (\w+)", statement))

    event.listen(Engine, "before_cursor_execute", count)
    try:
        assert main(["predict", "models:/predict-once@champion", "--input", str(tmp_path / "in.csv"),
                     "--id-column", "id", "--output", str(tmp_path / "out.csv")]) == 0
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert read["registered_model_aliases"] == 1, read
    assert f"with {'onnx' if exported else 'torch'} in" in capsys.readouterr().out
    assert (tmp_path / "out.csv").read_text().count("\n") == 11  # the header and every row
