"""Environment variables kiln reads, declared in one place.

kiln writes none of them, with one exception: ``kiln serve --workers N`` sets
PROMETHEUS_MULTIPROC_DIR while its worker processes run, because prometheus_client reads it when
first imported and spawned workers receive it only through the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"  # a team's tracking server, as MLflow itself reads it
# Where prometheus_client's processes share metrics files; an operator's choice is kept as is.
PROMETHEUS_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def tracking_uri(configured: str | None, output_dir: Path) -> str:
    """``tracking.uri``, else $MLFLOW_TRACKING_URI, else the embedded SQLite store of output_dir."""
    if configured:
        return configured
    from_env = os.environ.get(MLFLOW_TRACKING_URI)
    if from_env:
        return from_env
    return f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


def default_artifact_root(uri: str) -> str | None:
    """Where new experiments keep artifacts: ``mlartifacts/`` beside a SQLite store (never the
    working directory); a tracking server decides for itself."""
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        return (database.parent / "mlartifacts").resolve().as_uri()
    return None
