"""``kiln package``: the build context holds the image's contract (base, non-root user, health
check, labels, command), the model's files byte for byte, serving-only pins and the manifest;
it refuses a folder that is not empty and an unverified export, and takes a ``models:/`` URI."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import shlex
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from kiln.cli.main import main
from kiln.package import SERVE_ONNX, PackageResult
from tests.conftest import ROOT
from tests.package.conftest import COMMIT

NOLOAD = "The ``noload`` loader strategy is deprecated"  # SQLAlchemy 2.x, inside MLflow's SQL store
TRAINING = {"torch", "mlflow", "mlflow-skinny", "scikit-learn", "pandas", "pyarrow", "tensorboard",
            "torchvision", "safetensors", "onnx", "kiln-ml"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments dropped."""
    text = dockerfile.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_dockerfile_is_slim_non_root_checked_and_labelled(context: PackageResult, onnx_run: Path) -> None:
    steps = instructions(context.output / "Dockerfile")
    kinds = [kind for kind, _ in steps]
    assert steps[0] == ("FROM", f"python:{sys.version_info.major}.{sys.version_info.minor}-slim")
    (user,) = [args for kind, args in steps if kind == "USER"]
    assert user == "10001" and kinds.index("USER") > kinds.index("COPY")  # installs ran as root
    (health,) = [args for kind, args in steps if kind == "HEALTHCHECK"]
    assert "http://127.0.0.1:8000/ready" in health and "urllib.request" in health
    labels = dict(pair.split("=", 1) for pair in shlex.split(dict(steps)["LABEL"]))
    assert labels == context.labels
    assert labels["org.opencontainers.image.title"] == labels["kiln.model.name"] == onnx_run.name
    assert labels["org.opencontainers.image.version"] == labels["kiln.model.version"] == "local"
    assert labels["org.opencontainers.image.revision"] == labels["kiln.model.git_commit"] == COMMIT
    assert labels["kiln.model.run"] == onnx_run.name and labels["kiln.model.parity"] == "passed"
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["kiln"]
    assert json.loads(dict(steps)["CMD"]) == ["serve", "/model", "--host", "0.0.0.0", "--port", "8000",
                                              "--backend", "onnx"]
    (wheel,) = (context.output / "wheels").glob("kiln_ml-*.whl")
    runs = [args for kind, args in steps if kind == "RUN"]
    assert runs[0] == "pip install -r /tmp/kiln/requirements.txt"
    assert runs[1].startswith(f"pip install --no-deps /tmp/kiln/wheels/{wheel.name} ")


def test_the_model_is_copied_byte_for_byte_without_its_weights(context: PackageResult, onnx_run: Path) -> None:
    copied = context.output / "model" / "models"
    for name in ("model.json", "model.onnx", "exports.json", "reference.json"):  # reference: drift
        assert sha256(copied / name) == sha256(onnx_run / "models" / name), name
    assert not (copied / "model.safetensors").exists()
    files = {str(p.relative_to(context.output)) for p in context.files}
    assert {"Dockerfile", "README.md", "requirements.txt", "deploy/kubernetes.yaml",
            "model/models/model.onnx"} <= files


def test_requirements_pin_the_serving_closure_without_the_training_stack(context: PackageResult) -> None:
    lines = [line for line in (context.output / "requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    pins = dict(line.split("==") for line in lines)
    assert not TRAINING & pins.keys(), sorted(TRAINING & pins.keys())
    for name in ("fastapi", "uvicorn", "onnxruntime", "numpy", "pydantic", "starlette", "anyio"):
        assert pins[name] == importlib.metadata.version(name), name  # a transitive one too


def test_the_manifest_is_kiln_inits_running_the_images_command(context: PackageResult) -> None:
    deployment, service = yaml.safe_load_all((context.output / "deploy" / "kubernetes.yaml").read_text())
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    steps = dict(instructions(context.output / "Dockerfile"))
    assert container["args"] == json.loads(steps["CMD"])
    assert service["kind"] == "Service" and deployment["metadata"]["name"] == context.image.split(":")[0]


def test_the_serve_onnx_extra_is_the_list_the_image_pins() -> None:
    # read as a Python list literal: tomllib is 3.11+, and kiln supports 3.10
    text = (ROOT / "pyproject.toml").read_text().split("\nserve-onnx = [", 1)[1].split("\n]", 1)[0]
    assert ast.literal_eval("[" + text + "]") == list(SERVE_ONNX)


def test_a_folder_that_is_not_empty_is_refused_unless_force(
        context: PackageResult, onnx_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--force replaces what kiln package writes (a stale wheel too) and leaves other files."""
    output = Path(shutil.copytree(context.output, tmp_path / "image"))
    (output / "wheels" / "kiln_ml-0.0.1-py3-none-any.whl").write_bytes(b"stale")
    (output / "notes.txt").write_text("mine\n")
    assert main(["package", str(onnx_run), "--output", str(output)]) == 2
    assert "is not empty" in capsys.readouterr().err
    # an unverified export: refused whatever the folder holds, then packaged with the flag
    (output / "unverified").mkdir()
    run = Path(shutil.copytree(onnx_run, tmp_path / "run" / onnx_run.name))
    records = json.loads((run / "models" / "exports.json").read_text())
    records["exports"]["onnx"]["passed"] = False  # as kiln export writes a failed parity check
    (run / "models" / "exports.json").write_text(json.dumps(records))
    assert main(["package", str(run), "--output", str(tmp_path / "new")]) == 1
    assert "refusing to serve" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert main(["package", str(run), "--output", str(output), "--force", "--allow-unverified"]) == 0
    assert [p.name for p in (output / "wheels").iterdir()] == [f"kiln_ml-{importlib.metadata.version('kiln-ml')}-py3-none-any.whl"]
    assert (output / "notes.txt").read_text() == "mine\n" and (output / "unverified").is_dir()
    steps = dict(instructions(output / "Dockerfile"))
    assert json.loads(steps["CMD"])[-1] == "--allow-unverified"  # else the image refuses to start
    assert 'kiln.model.parity="failed"' in steps["LABEL"]


@pytest.mark.filterwarnings(f"ignore:{NOLOAD}:DeprecationWarning")
def test_a_registered_version_by_alias(onnx_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kiln.registry import register_run
    from kiln.tracking.sync import sync_run

    run = Path(shutil.copytree(onnx_run, tmp_path / "runs" / onnx_run.name))
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NOLOAD, category=DeprecationWarning)
        assert sync_run(run, uri).model_logged
        registered = register_run(run, "package-digits", alias="champion", uri=uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["package", "models:/package-digits@champion", "--output", str(tmp_path / "image")]) == 0
    labels = dict(pair.split("=", 1) for pair in shlex.split(
        dict(instructions(tmp_path / "image" / "Dockerfile"))["LABEL"]))
    assert (labels["kiln.model.name"], labels["kiln.model.version"]) == ("package-digits", "1")
    assert labels["kiln.model.run_id"] == registered.run_id and labels["kiln.model.git_commit"] == COMMIT
    assert sha256(tmp_path / "image" / "model" / "models" / "model.onnx") == sha256(run / "models" / "model.onnx")
