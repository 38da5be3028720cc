"""Where a model version came from: its kiln run directory (when it is on this machine and still
holds the registered weights) and the metrics measured on it.

A version records the sha256 of the weights it was registered with (tag ``kiln.model_sha256``), so
a run directory that was retrained or resumed since is not mistaken for the registered model.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.errors import RegistryError
from kiln.runs.gates import recorded_metrics

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from kiln.runs.summary import RunSummary

log = logging.getLogger("kiln.registry")

TAG_RUN_DIR = "kiln.run_dir"
TAG_RUN = "kiln.run"
TAG_CONFIG_HASH = "kiln.config_hash"
TAG_SHA256 = "kiln.model_sha256"
WEIGHTS = Path("models") / "model.safetensors"
_NOT_METRICS = ("step/", "system/")  # per-step and system series, not a model's quality


def weights_sha256(run_dir: Path) -> str:
    digest = hashlib.sha256()
    with (run_dir / WEIGHTS).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_run_dir(version: ModelVersion) -> Path | None:
    """The version's run directory if it is here and still holds the registered weights."""
    text = (version.tags or {}).get(TAG_RUN_DIR)
    if not text:
        return None
    run_dir = Path(text)
    if not (run_dir / "models" / "model.json").is_file() or not (run_dir / WEIGHTS).is_file():
        return None
    expected = (version.tags or {}).get(TAG_SHA256)
    if expected and weights_sha256(run_dir) != expected:
        log.warning(
            "%s has changed since version %s of %s was registered (its weights differ); "
            "using the registered copy in MLflow instead", run_dir, version.version, version.name,
        )
        return None
    return run_dir


def read_summary(run_dir: Path) -> RunSummary:
    """The run's summary; RegistryError when it has none (only a finished run can be registered)."""
    from kiln.runs.rundir import RunDir

    summary = RunDir.open(run_dir).read_summary_if_any()
    if summary is None:
        raise RegistryError(
            f"{run_dir} has no summary.json: only a finished kiln run can be registered "
            "(train it to the end, or resume it with `kiln resume`)"
        )
    return summary


def version_metrics(client: MlflowClient, version: ModelVersion) -> tuple[dict[str, float], str]:
    """The metrics gates are checked against, and where they were read.

    The run directory's recorded metrics when it is here (summary.json, with the best epoch, and
    what ``kiln eval``/``kiln gate`` measured into ``eval/``), else the metrics of the version's
    MLflow run (their latest values).
    """
    run_dir = local_run_dir(version)
    if run_dir is not None and (run_dir / "summary.json").is_file():
        return recorded_metrics(run_dir), str(run_dir / "summary.json")
    if not version.run_id:
        raise RegistryError(
            f"version {version.version} of {version.name!r} has no MLflow run, so there are no "
            "measured metrics to check gates against; register it from a kiln run"
        )
    run = client.get_run(version.run_id)
    metrics = {k: float(v) for k, v in run.data.metrics.items() if not k.startswith(_NOT_METRICS)}
    return metrics, f"MLflow run {version.run_id}"
