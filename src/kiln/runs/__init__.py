"""The run directory: layout, the typed summary, environment capture and listing."""

from kiln.runs.layout import RunPaths, create_run_dir
from kiln.runs.rundir import RunDir, RunInfo, list_runs, read_summary
from kiln.runs.summary import BestEpoch, RunSummary

__all__ = [
    "BestEpoch",
    "RunDir",
    "RunInfo",
    "RunPaths",
    "RunSummary",
    "create_run_dir",
    "list_runs",
    "read_summary",
]
