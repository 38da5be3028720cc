"""Log exports to the run's MLflow run, best effort.

The files on disk are the export; MLflow holds copies. So an unreachable tracking server is a
warning and never fails an export that passed its parity check. The run is addressed through an
``MlflowClient`` with the id from ``logs/mlflow.json`` (never the fluent global run).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("kiln.export")

ARTIFACT_DIR = "exports"


def log_to_mlflow(root: Path, files: Sequence[Path]) -> str | None:
    """Log ``files`` under ``exports/`` of the run's MLflow run.

    Returns None when the run has no MLflow run, ``"logged N files to MLflow run ID"`` on success,
    and ``"failed: ..."`` (also logged as a warning) when MLflow could not take them.
    """
    from kiln.tracking.mlflow import read_link

    try:
        link = read_link(root / "logs")
    except (OSError, ValueError) as exc:
        log.warning("exports not logged to MLflow: cannot read %s (%s)", root / "logs", exc)
        return f"failed: cannot read logs/mlflow.json ({exc})"
    if link is None:
        return None
    try:
        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        client = MlflowClient(str(link["tracking_uri"]))
        run_id = str(link["run_id"])
        for path in files:
            client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    except Exception as exc:  # best effort by design: any MLflow failure is only a warning
        log.warning("exports not logged to MLflow (%s: %s); the files on disk are complete",
                    type(exc).__name__, exc)
        return f"failed: {type(exc).__name__}: {exc}"
    return f"logged {len(files)} files to MLflow run {run_id}"
