"""Helpers shared by the verbs: config arguments and tables."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterable
from typing import Any


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``-c FILE`` plus free overrides (``a.b=1`` or ``--a.b 1``) collected by main."""
    parser.add_argument("-c", "--config", help="YAML config file (default: built-in defaults)")
    parser.set_defaults(accepts_overrides=True)
    parser.epilog = (
        "Overrides: any number of KEY=VALUE or --KEY VALUE, e.g. training.lr=1e-4 "
        "'model.hidden=[256,128]' --training.epochs 5 (values are parsed as YAML)."
    )


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    if value is None:
        return "-"
    return str(value)


def print_table(title: str, columns: list[str], rows: Iterable[list[Any]], header: bool = True) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=header)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    # Piped output (a file, a CI log) gets room for full run names instead of 80 columns.
    Console(width=None if sys.stdout.isatty() else 120).print(table)


def prestart_trackers(cfg: Any) -> None:
    """Start the run's MLflow worker now, on rank 0, so that its imports overlap this process's
    own start-up (torch, the data, a checkpoint) instead of its training (``kiln.tracking.spare``)."""
    from kiln.distributed.env import launch_env
    from kiln.tracking.mlflow_process import prestart

    if launch_env().rank == 0:
        with contextlib.suppress(OSError):  # the tracker starts its own worker and reports
            prestart(cfg)
