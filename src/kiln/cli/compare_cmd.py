"""``kiln compare RUN_DIR... | --experiment NAME``: params and metrics of runs side by side.

Params that differ between the runs are marked ``*`` (and highlighted in the table): the view for
comparing a baseline, an enhanced and an optimized run. Local runs are read from their
``config.yaml`` and ``summary.json``; ``--experiment`` reads the runs of an MLflow experiment.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.errors import TrackingError, UsageError

MARK = "*"
_METRIC_ORDER = ("test_", "val_", "train_", "best_")  # the held-out numbers first


@dataclass(frozen=True)
class RunColumn:
    """One run: its name, flattened params (as strings, as MLflow stores them) and metrics."""

    name: str
    params: dict[str, str]
    metrics: dict[str, float]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("compare", help="params and metrics of runs side by side", allow_abbrev=False)
    parser.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run directories to compare")
    parser.add_argument("--experiment", help="compare the runs of this MLflow experiment instead")
    parser.add_argument("--uri", help="tracking URI for --experiment (default: $MLFLOW_TRACKING_URI, else runs/mlflow.db)")
    parser.add_argument("--sort", metavar="METRIC", help="order the runs by this metric (ascending)")
    parser.add_argument("--descending", action="store_true", help="with --sort: highest first")
    parser.add_argument("--diff-only", action="store_true", help="show only the params that differ")
    parser.add_argument("--format", choices=["table", "csv", "markdown"], default="table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.run_dirs) == bool(args.experiment):
        raise UsageError("give either run directories or --experiment NAME (not both, not neither)")
    if args.experiment:
        from kiln.registry.client import translate_errors

        columns = translate_errors(from_experiment)(args.experiment, args.uri)
    else:
        columns = [from_run_dir(Path(p)) for p in args.run_dirs]
    if args.sort:
        columns = sort_runs(columns, args.sort, args.descending)
    rows = build_rows(columns, args.diff_only)
    names = [c.name for c in columns]
    if args.format == "csv":
        write_csv(names, rows)
    elif args.format == "markdown":
        print(to_markdown(names, rows))
    else:
        print_rich(names, rows)
    return 0


def from_run_dir(run_dir: Path) -> RunColumn:
    import yaml

    from kiln.runs.gates import metrics_from_summary
    from kiln.runs.rundir import RunDir

    run = RunDir.open(run_dir)
    params = flatten(yaml.safe_load(run.config.read_text(encoding="utf-8")) or {})
    summary = run.read_summary_if_any()  # a run still going has params but no metrics yet
    metrics = metrics_from_summary(summary) if summary is not None else {}
    return RunColumn(run_dir.name, params, metrics)


def from_experiment(name: str, uri: str | None) -> list[RunColumn]:
    from kiln.catalog import did_you_mean
    from kiln.registry.client import get_client

    client = get_client(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        known = sorted(e.name for e in client.search_experiments())
        raise TrackingError(
            f"no MLflow experiment {name!r} in {client.tracking_uri}.{did_you_mean(name, known)}",
            field="--experiment", allowed=known,
            hint=None if known else "runs tracked with the mlflow backend create their experiment",
        )
    columns, token = [], None
    while True:
        page = client.search_runs([experiment.experiment_id], page_token=token)
        for r in page:
            metrics = {k: float(v) for k, v in r.data.metrics.items() if not k.startswith(("step/", "system/"))}
            columns.append(RunColumn(r.info.run_name or r.info.run_id[:8], dict(r.data.params), metrics))
        token = page.token
        if not token:
            break
    if not columns:
        raise TrackingError(f"MLflow experiment {name!r} has no runs",
                            hint="compare run directories instead: kiln compare RUN_DIR RUN_DIR")
    return columns


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists and empty dicts as JSON, like kiln's MLflow params."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return flat


def sort_runs(columns: list[RunColumn], metric: str, descending: bool) -> list[RunColumn]:
    """Runs ordered by ``metric``; runs without it go last. UsageError if no run has it."""
    known = sorted({k for c in columns for k in c.metrics})
    if metric not in known:
        from kiln.catalog import did_you_mean

        raise UsageError(f"--sort {metric!r}: no run has this metric.{did_you_mean(metric, known)} Metrics: {', '.join(known)}")
    have = [c for c in columns if metric in c.metrics]
    have.sort(key=lambda c: c.metrics[metric], reverse=descending)
    return have + [c for c in columns if metric not in c.metrics]


def build_rows(columns: list[RunColumn], diff_only: bool) -> list[tuple[str, str, bool, list[Any]]]:
    """Rows of (kind, name, differs, values): params first, then metrics (test, val, train, best)."""
    rows: list[tuple[str, str, bool, list[Any]]] = []
    for key in sorted({k for c in columns for k in c.params}):
        values = [c.params.get(key) for c in columns]
        differs = len(set(values)) > 1
        if differs or not diff_only:
            rows.append(("param", key, differs, values))
    metric_keys = {k for c in columns for k in c.metrics}
    for key in sorted(metric_keys, key=_metric_rank):
        rows.append(("metric", key, False, [c.metrics.get(key) for c in columns]))
    return rows


def _metric_rank(key: str) -> tuple[int, str]:
    for rank, prefix in enumerate(_METRIC_ORDER):
        if key.startswith(prefix):
            return rank, key
    return len(_METRIC_ORDER), key


def write_csv(names: list[str], rows: list[tuple[str, str, bool, list[Any]]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["kind", "name", "differs", *names])
    for kind, key, differs, values in rows:
        writer.writerow([kind, key, MARK if differs else "", *("" if v is None else v for v in values)])


def to_markdown(names: list[str], rows: list[tuple[str, str, bool, list[Any]]]) -> str:
    from kiln.cli.common import fmt

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"| | {' | '.join(cell(n) for n in names)} |", f"|---|{'---|' * len(names)}"]
    for _kind, key, differs, values in rows:
        label = f"**{cell(key)}** \\{MARK}" if differs else cell(key)
        lines.append(f"| {label} | {' | '.join(cell(fmt(v)) for v in values)} |")
    lines.append(f"\n\\{MARK} differs between the runs")
    return "\n".join(lines)


def print_rich(names: list[str], rows: list[tuple[str, str, bool, list[Any]]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from kiln.cli.common import fmt

    table = Table(title=f"{len(names)} runs ({MARK}: param differs)", title_justify="left")
    table.add_column("", overflow="fold")
    for name in names:
        table.add_column(name, overflow="fold")
    for index, (kind, key, differs, values) in enumerate(rows):
        last_param = kind == "param" and (index + 1 == len(rows) or rows[index + 1][0] != "param")
        table.add_row(f"{key} {MARK}" if differs else key, *(fmt(v) for v in values),
                      style="bold yellow" if differs else None, end_section=last_param)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
