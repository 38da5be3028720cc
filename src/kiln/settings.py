"""Environment variables kiln reads, declared in one place; code reads them through these names.

In its own process kiln writes two of them, each only while it needs it, and puts them back:
PROMETHEUS_MULTIPROC_DIR while ``kiln serve --workers N`` runs (prometheus_client reads it when
first imported, and spawned workers receive it only through the environment), and
CUBLAS_WORKSPACE_CONFIG during a ``run.deterministic`` fit when it was not set. The MLflow
worker's variables below are set in that child process's environment only.

``kiln.distributed`` imports nothing of kiln (not even this module), so it reads torchrun's own
variables itself: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_RUN_ID,
TORCHELASTIC_RESTART_COUNT and TORCHELASTIC_USE_AGENT_STORE (kiln/distributed/env.py, group.py).
"""

from __future__ import annotations

import os
from pathlib import Path

MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"  # a team's tracking server, as MLflow itself reads it
# Where prometheus_client's processes share metrics files; an operator's choice is kept as is.
PROMETHEUS_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# cuBLAS's workspace size; run.deterministic needs a fixed one and sets it only when absent.
CUBLAS_WORKSPACE_CONFIG = "CUBLAS_WORKSPACE_CONFIG"
# glibc malloc settings a user may tune by hand; any of them set: run.keep_freed_memory leaves
# the allocator alone (kiln.train.allocator).
GLIBC_MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
GLIBC_TUNABLES = "GLIBC_TUNABLES"  # glibc's tunables; a "malloc" one there: allocator left alone
LD_PRELOAD = "LD_PRELOAD"  # a preloaded allocator (jemalloc, tcmalloc, mimalloc): left alone
# The MLflow worker's retries, their backoff and its request timeout; kiln gives its worker
# process short ones unless the user set these (kiln.tracking.mlflow.WORKER_ENV).
MLFLOW_HTTP_REQUEST_MAX_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
MLFLOW_HTTP_REQUEST_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
# The user's cache root (XDG base directories): data.image.cache: disk keeps decoded images in
# $XDG_CACHE_HOME/kiln/images, else ~/.cache/kiln/images (kiln.data.images.dataset), and image
# scans keep their verdicts in .../kiln/scans (kiln.data.images.scan_cache).
XDG_CACHE_HOME = "XDG_CACHE_HOME"
# Set by kiln only in its MLflow worker's environment: the inherited file descriptor of the
# run's finisher lock (kiln.tracking.finisher).
KILN_FINISHER_LOCK_FD = "KILN_FINISHER_LOCK_FD"


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
