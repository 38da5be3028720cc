"""Environment variables kiln reads, declared in one place (kiln never writes them)."""

from __future__ import annotations

import os
from pathlib import Path

MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"  # a team's tracking server, as MLflow itself reads it


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
