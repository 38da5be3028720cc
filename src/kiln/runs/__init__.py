"""The run directory: layout, environment capture, summary and listing."""

from kiln.runs.layout import RunPaths, create_run_dir
from kiln.runs.summary import RunInfo, list_runs, read_summary

__all__ = ["RunInfo", "RunPaths", "create_run_dir", "list_runs", "read_summary"]
