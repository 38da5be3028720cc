"""A model that cannot be loaded or run stops ``kiln serve`` at once with one clear error and exit
code 1, with one process or several: uvicorn's supervisor would restart a worker that dies while
loading it again and again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import ROOT, run_cli


def export_dir(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the run's model package, to put a broken export in."""
    models = tmp_path / trained_run.name / "models"
    shutil.copytree(trained_run / "models", models)
    return models


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_corrupt_onnx_file_is_refused(trained_run: Path, tmp_path: Path, workers: str) -> None:
    path = export_dir(trained_run, tmp_path) / "model.onnx"
    path.write_bytes(b"not a protobuf")
    # --allow-unverified: past the missing parity record, to the load itself
    result = run_cli("serve", str(path), "--port", "0", "--workers", workers, "--allow-unverified", timeout=120)
    assert_refused(result, f"ONNX Runtime cannot load {path}", "InvalidProtobuf",
                   "kiln export RUN --format onnx")


def test_an_export_of_another_shape_is_refused(trained_run: Path, tmp_path: Path) -> None:
    path = export_dir(trained_run, tmp_path) / "model.onnx"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "three_features",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = run_cli("serve", str(path), "--port", "0", "--workers", "2", "--allow-unverified", timeout=120)
    assert_refused(result, "fails on an input of shape [1, 1, 8, 8]", "(onnx backend)")


def test_workers_that_fail_to_start_end_the_supervisor_with_exit_1(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import sys, uvicorn
        from kiln.serve.workers import run_workers
        config = uvicorn.Config("tests.serve.failing_app:create", factory=True, workers=2,
                                host="127.0.0.1", port=0, log_level="error")
        with config.bind_socket() as sock:
            code = run_workers(config, sock)
        sys.exit(code)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "no model to serve" in result.stderr


def test_a_port_already_taken_is_exit_1_naming_the_port_and_the_fix(trained_run: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli("serve", str(trained_run), "--backend", "torch", "--port", port,
                         timeout=120)
    assert_refused(result, f"cannot listen on 127.0.0.1:{port}", "--port 0 for a free one",
                   "Address already in use")
