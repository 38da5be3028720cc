"""The ``kiln`` command in real subprocesses: exit codes, messages, and a real training run."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli

TINY = ["run.progress=false", "model.hidden=[16]", "training.epochs=2", "tracking.backends=[csv]"]


def test_help_and_version() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and "train" in result.stdout and "eval" in result.stdout
    assert run_cli("--version").stdout.startswith("kiln ")


def test_unknown_key_exit_2_with_suggestion_and_no_traceback(tmp_path: Path) -> None:
    result = run_cli("train", "training.lrr=0.1", cwd=tmp_path)
    assert result.returncode == 2
    assert "training.lrr: unknown key. Did you mean 'training.lr'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing is created for a bad config


def test_wrong_type_bad_override_missing_file_and_yaml_syntax(tmp_path: Path) -> None:
    wrong = run_cli("config", "show", "--training.epochs", "ten")
    assert wrong.returncode == 2 and "training.epochs: Input should be a valid integer" in wrong.stderr
    bad = run_cli("train", "epochs", cwd=tmp_path)
    assert bad.returncode == 2 and "'epochs': not an override" in bad.stderr
    missing = run_cli("train", "-c", "nope.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "config file not found: nope.yaml" in missing.stderr
    (tmp_path / "broken.yaml").write_text("training:\n  epochs: [1\n")
    syntax = run_cli("train", "-c", str(tmp_path / "broken.yaml"))
    assert syntax.returncode == 2 and "YAML syntax error" in syntax.stderr and "line 3" in syntax.stderr
    for result in (wrong, bad, missing, syntax):
        assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback() -> None:
    result = run_cli("--debug", "config", "show", "training.epochs=ten")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_train_eval_runs_end_to_end(tmp_path: Path) -> None:
    train = run_cli("train", *TINY, cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert "run directory: runs/kiln_" in train.stdout
    assert "test_accuracy" in train.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "summary.json").is_file()

    evaluation = run_cli("eval", str(run_dir), "--split", "val", cwd=tmp_path)
    assert evaluation.returncode == 0, evaluation.stderr
    metrics = json.loads((run_dir / "eval/metrics_val.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert metrics["val_accuracy"] == summary["final"]["val_accuracy"]

    listing = run_cli("runs", cwd=tmp_path)
    assert listing.returncode == 0 and run_dir.name in listing.stdout


def test_eval_of_a_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("eval", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "not a run directory" in result.stderr  # a usage error


def test_config_show_and_schema() -> None:
    show = run_cli("config", "show", "-c", "configs/mnist_cnn_optimized.yaml", "training.epochs=2")
    assert show.returncode == 0 and "epochs: 2" in show.stdout and "lr: 0.0005" in show.stdout
    schema = json.loads(run_cli("config", "schema").stdout)
    assert "training" in schema["properties"]


def test_models_and_datasets_listing() -> None:
    models = run_cli("models")
    assert models.returncode == 0 and "mlp" in models.stdout and "hidden=" in models.stdout
    datasets = run_cli("datasets")
    assert "fashion_mnist" in datasets.stdout


def test_python_dash_m_and_console_script_agree() -> None:
    import shutil
    import subprocess

    script = shutil.which("kiln") or str(Path(__import__("sys").executable).with_name("kiln"))
    result = subprocess.run([script, "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout == run_cli("--version").stdout
