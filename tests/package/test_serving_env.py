"""The build context, installed the way its Dockerfile installs it and run with its command: a
fresh virtual environment (not this one: no torch, no MLflow) gets ``requirements.txt`` and kiln's
wheel with ``--no-deps``, then ``kiln serve model`` answers ``/ready`` and the same probabilities
as the server of this torch-installed environment.

This machine cannot build the image itself (docker has no daemon here and the base image cannot
be pulled offline), so the virtual environment stands in for it: the same pins, the same wheel,
the same command. Creating it and installing the pins takes about 40 s, once per module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from kiln.package import PackageResult
from tests.batch_predict.conftest import digits_inputs, reference

TRAINING_STACK = ("torch", "mlflow", "sklearn", "pandas", "pyarrow", "tensorboard", "safetensors", "onnx")


def clean_env(venv: Path) -> dict[str, str]:
    """This process's environment without what would let the venv see this one's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def check(command: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def serving_env(context: PackageResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("serve-env") / "venv"
    env = clean_env(venv)
    check([sys.executable, "-m", "venv", str(venv)], env)  # on the base interpreter, not this venv
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    check([*pip, "-r", "requirements.txt"], env, cwd=context.output)
    (wheel,) = (context.output / "wheels").glob("kiln_ml-*.whl")
    check([*pip, "--no-deps", str(wheel)], env)
    return venv


def test_the_serving_env_has_kiln_and_no_training_stack(serving_env: Path) -> None:
    script = ("import importlib.util, json, kiln; print(json.dumps({'kiln': kiln.__file__, 'found': "
              f"[m for m in {TRAINING_STACK!r} if importlib.util.find_spec(m)]}}))")
    found = json.loads(check([str(serving_env / "bin" / "python"), "-c", script], clean_env(serving_env)))
    assert found["found"] == []
    assert Path(found["kiln"]).is_relative_to(serving_env)  # the wheel's kiln, not the checkout's
    result = subprocess.run([str(serving_env / "bin" / "python"), "-c", "import torch"],
                            env=clean_env(serving_env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "No module named 'torch'" in result.stderr


def test_the_context_command_serves_the_same_probabilities(
        serving_env: Path, context: PackageResult, onnx_run: Path, tmp_path: Path) -> None:
    from kiln.serve import create_app
    from tests.serve.test_app import serving

    x = digits_inputs(16)
    body = {"instances": x.tolist()}
    log = tmp_path / "serve.log"
    with log.open("w") as stderr, subprocess.Popen(
            [str(serving_env / "bin" / "kiln"), "serve", "model", "--port", "0", "--backend", "onnx"],
            cwd=context.output, env=clean_env(serving_env), stdout=subprocess.PIPE, stderr=stderr,
            text=True) as server:
        try:
            base = served_at(server, log)
            assert wait_ready(base, server) == {"status": "ready"}
            meta = json.load(urllib.request.urlopen(f"{base}/metadata", timeout=10))
            request = urllib.request.Request(f"{base}/predict", data=json.dumps(body).encode(),
                                             headers={"content-type": "application/json"})
            answer = json.load(urllib.request.urlopen(request, timeout=30))
            server.send_signal(signal.SIGTERM)
            assert server.wait(60) == 0, log.read_text()
        finally:
            if server.poll() is None:
                server.kill()
    assert (meta["name"], meta["backend"], meta["parity"]["verdict"]) == (onnx_run.name, "onnx", "passed")
    with serving(create_app(onnx_run)) as client:  # this environment's server, torch installed
        expected = client.post("/predict", json=body).json()
    assert answer["classes"] == expected["classes"]
    np.testing.assert_allclose(answer["probabilities"], expected["probabilities"], rtol=0, atol=1e-6)
    # and the eager torch model, within the tolerance its export's parity check used
    np.testing.assert_allclose(answer["probabilities"], reference(onnx_run, x), rtol=0, atol=1e-5)


def served_at(server: subprocess.Popen[str], log: Path) -> str:
    """The address in the line ``serving NAME (...) on http://HOST:PORT ...`` (other lines may
    come first)."""
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("serving "):
            return line.split(" on ")[1].split()[0]
    raise AssertionError(f"kiln serve exited with {server.wait(30)}: {log.read_text()[-3000:]}")


def wait_ready(base: str, server: subprocess.Popen[str]) -> dict[str, str]:
    deadline = time.monotonic() + 120
    while True:
        try:
            answer: dict[str, str] = json.load(urllib.request.urlopen(f"{base}/ready", timeout=5))
            return answer
        except (urllib.error.URLError, ConnectionError) as exc:
            assert server.poll() is None, f"kiln serve exited with {server.returncode}"
            assert time.monotonic() < deadline, f"{base}/ready did not answer 200 in 120 s: {exc}"
            time.sleep(0.1)


@pytest.mark.parametrize("verb", [["train"], ["export", "model"], ["sweep", "--help"]])
def test_a_training_verb_in_the_serving_env_says_what_is_missing(serving_env: Path, verb: list[str],
                                                                  tmp_path: Path) -> None:
    """The serving install has no torch or MLflow: a verb that needs them says so in one line
    (exit 1), naming the package and the full install, instead of an ImportError's traceback."""
    result = subprocess.run([str(serving_env / "bin" / "kiln"), *verb], env=clean_env(serving_env), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    if verb[-1] == "--help":  # help needs nothing heavy: the verbs import their libraries when run
        assert result.returncode == 0 and "usage: kiln sweep" in result.stdout, result.stderr
        return
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: kiln {verb[0]} needs 'torch'") and "pip install kiln-ml" in lines[0]
