"""``kiln serve`` runs only an export whose parity ``kiln export`` verified, unless
``--allow-unverified``; ``/metadata`` and ``kiln_model_info`` say which model, version, run and
verdict are served. The eager torch model is the reference and always serves.

Refusals are checked on a real ``kiln serve`` process (its exit code and message), the verdicts
in-process, and the ONNX path in a fresh interpreter that must never import torch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from kiln.errors import ServeError
from kiln.export.record import EXPORTS
from kiln.export.run import ExportOptions, export_run
from kiln.serve import create_app, prepare_model
from kiln.serve.model import load_served_model
from tests.serve.conftest import running
from tests.serve.helpers import digits_inputs, metric_samples
from tests.serve.test_app import serving


@pytest.fixture(scope="module")
def exported_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the run with a verified ONNX export (kiln export's own code)."""
    copy = tmp_path_factory.mktemp("verified") / trained_run.name
    shutil.copytree(trained_run, copy)
    assert export_run(copy, ExportOptions(formats=("onnx",), mlflow=False)).passed
    return copy


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    return copy


def _mark_failed(run: Path) -> None:
    """exports.json as a failed parity check leaves it (here on the file that was exported)."""
    path = run / "models" / EXPORTS
    data = json.loads(path.read_text())
    record = data["exports"]["onnx"]
    record["passed"] = record["parity"]["passed"] = False
    record["parity"]["max_abs_diff"] = 0.25
    path.write_text(json.dumps(data))


def _shipped_without_record(run: Path, tmp_path: Path) -> Path:
    """The model package copied elsewhere with its ONNX file but without exports.json."""
    shipped = tmp_path / "shipped"
    shutil.copytree(run / "models", shipped, ignore=shutil.ignore_patterns(EXPORTS))
    return shipped / "model.onnx"


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiln", "serve", *args, "--port", "0"],
                          capture_output=True, text=True, timeout=120)


def test_a_verified_export_serves_and_the_eager_model_is_the_reference(exported_run: Path) -> None:
    source = prepare_model(exported_run)
    assert source.parity is not None and source.parity.verdict == "passed" and source.parity.verified
    assert "max abs diff" in source.parity.detail and "tolerance" in source.parity.detail
    torch_source = prepare_model(exported_run, "torch")  # no flag: the reference needs no record
    assert torch_source.parity is not None and torch_source.parity.verdict == "reference"


def test_a_failed_record_is_refused_by_kiln_serve_with_exit_1(exported_run: Path, tmp_path: Path) -> None:
    run = _copy(exported_run, tmp_path)
    _mark_failed(run)
    result = _serve(str(run))
    assert result.returncode == 1, result.stderr
    message = result.stderr
    assert f"refusing to serve {run / 'models' / 'model.onnx'}" in message
    assert f"parity record in {run / 'models' / EXPORTS} says it failed" in message
    assert "max abs diff 0.25" in message
    assert f"kiln export {run} --format onnx" in message and "--allow-unverified" in message
    assert "Traceback" not in message
    # the failed export is not silently replaced by a new one
    assert json.loads((run / "models" / EXPORTS).read_text())["exports"]["onnx"]["passed"] is False
    with pytest.raises(ServeError, match="says it failed"):
        prepare_model(run, "onnx")
    assert prepare_model(run, "torch").parity.verdict == "reference"  # type: ignore[union-attr]


def test_an_onnx_file_without_its_record_is_refused_then_served_with_allow_unverified(
        exported_run: Path, tmp_path: Path) -> None:
    onnx = _shipped_without_record(exported_run, tmp_path)
    refused = _serve(str(onnx))
    assert refused.returncode == 1
    assert f"{onnx.parent / EXPORTS} holds no parity record of model.onnx" in refused.stderr
    assert "kiln export RUN_DIR --format onnx" in refused.stderr  # the copy has no run to name

    with running(onnx, tmp_path / "server.log", "--allow-unverified") as server:
        meta = httpx.get(f"{server.url}/metadata").json()
        answer = httpx.post(f"{server.url}/predict", json={"instances": digits_inputs(2).tolist()})
        samples = metric_samples(httpx.get(f"{server.url}/metrics").text)
    log = server.output()
    assert "serving an UNVERIFIED export (--allow-unverified)" in log and "UNVERIFIED export) on http" in log
    assert answer.status_code == 200
    assert meta["parity"]["verdict"] == "missing" and meta["parity"]["verified"] is False
    assert meta["parity"]["allow_unverified"] is True
    assert meta["warning"].startswith("UNVERIFIED export: ") and "no parity record" in meta["warning"]
    (info,) = [dict(labels) for (name, labels) in samples if name == "kiln_model_info"]
    assert info["parity"] == "missing" and info["version"] == "local" and info["run"] == exported_run.name


def test_a_file_changed_after_its_export_is_modified(exported_run: Path, tmp_path: Path) -> None:
    run = _copy(exported_run, tmp_path)
    with (run / "models" / "model.onnx").open("ab") as f:
        f.write(b"\0")  # no longer the bytes the record's sha256 names
    with pytest.raises(ServeError, match=r"not the file its record .* checked"):
        prepare_model(run)
    assert prepare_model(run, allow_unverified=True).parity.verdict == "modified"  # type: ignore[union-attr]


def test_a_failed_export_that_left_no_file_cannot_be_served(exported_run: Path, tmp_path: Path) -> None:
    run = _copy(exported_run, tmp_path)
    path = run / "models" / EXPORTS
    data = json.loads(path.read_text())
    data["exports"]["onnx"].update(passed=False, file=None, error="ExportError: unsupported operator")
    path.write_text(json.dumps(data))
    (run / "models" / "model.onnx").unlink()
    with pytest.raises(ServeError, match=r"failed and left no file .*unsupported operator"):
        prepare_model(run, allow_unverified=True)


def test_metadata_and_model_info_name_the_version_run_and_verdict(exported_run: Path) -> None:
    app = create_app(exported_run)
    with serving(app) as client:
        meta = client.get("/metadata").json()
        samples = metric_samples(client.get("/metrics").text)
    assert (meta["name"], meta["version"], meta["run"]) == (exported_run.name, "local", exported_run.name)
    assert meta["run_id"] is None  # the tiny run was tracked without MLflow
    summary = json.loads((exported_run / "summary.json").read_text())
    assert meta["config_hash"] == summary["config_hash"]
    assert meta["parity"]["verdict"] == "passed" and meta["parity"]["verified"] is True
    assert meta["parity"]["record"] == str(exported_run / "models" / EXPORTS) and meta["warning"] is None
    (info,) = [dict(labels) for (name, labels) in samples if name == "kiln_model_info"]
    assert info == {"name": exported_run.name, "version": "local", "backend": "onnx",
                    "run": exported_run.name, "parity": "passed"}


def test_the_onnx_path_never_imports_torch(exported_run: Path) -> None:
    script = (
        "import sys, numpy as np\n"
        "from kiln.serve.model import prepare_model, load_served_model, warm_up\n"
        f"served = load_served_model(prepare_model({str(exported_run)!r}))\n"
        "warm_up(served)\n"
        "out = served.backend.predict(np.zeros((2, 1, 8, 8), dtype=np.float32))\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
        "print(served.backend.name, served.parity.verdict, out.shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["onnx", "passed", "(2,", "10)"]


def test_a_source_built_by_hand_is_checked_when_loaded(exported_run: Path) -> None:
    """kiln predict swaps the backend of a prepared source (dataclasses.replace): the verdict
    follows the export actually loaded, not the one prepared."""
    import dataclasses

    torch_source = prepare_model(exported_run, "torch")
    onnx = (exported_run / "models" / "model.onnx").resolve()
    served = load_served_model(dataclasses.replace(torch_source, backend="onnx", export_file=onnx))
    assert served.parity.verdict == "passed" and served.parity.file == str(onnx)
    probabilities = served.backend.predict(np.zeros((1, 1, 8, 8), dtype=np.float32))
    assert probabilities.shape == (1, 10)
