"""``kiln monitor export STATE_DIR|RUN_DIR|monitor.db --output FILE.csv|FILE.parquet``;
``kiln monitor report STATE_DIR|RUN_DIR|monitor.db --output report.html``.

Both read the prediction log ``kiln serve`` writes (read-only: safe while the server runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kiln.cli.monitor_assets_cmd import add_action as add_assets_action


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "monitor", help="the served model's prediction log and feedback (export), drift (report)",
        description="Work with the prediction log kiln serve keeps in its state directory.",
        allow_abbrev=False,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export", help="write the prediction log, joined with feedback, as CSV or Parquet",
        description="One row per logged prediction: request id, time, model and version, predicted "
                    "class and probability, the feedback label if any, and the input summary as "
                    "columns. The format follows the output's suffix.",
        allow_abbrev=False,
    )
    export.add_argument("source", type=Path, help="a serve state directory (--state-dir), a run "
                                                  "directory kiln serve served, or a monitor.db")
    export.add_argument("--output", "-o", type=Path, required=True, help="FILE.csv or FILE.parquet")
    export.set_defaults(handler=run_export)
    _add_report(actions)


def _add_report(actions: Any) -> None:
    report = actions.add_parser(
        "report", help="an HTML page of drift: training's data against live traffic, with PSI",
        description="For the newest model version in the log (or --version), compare the last "
                    "--window logged predictions with the reference statistics training saved: "
                    "each input feature (or channel statistic and brightness for images), the "
                    "predicted classes and the top-1 confidence, as plots with their population "
                    "stability index (over 0.2: drift worth an alert).",
        allow_abbrev=False,
    )
    report.add_argument("source", type=Path, help="a serve state directory (--state-dir), a run "
                                                  "directory kiln serve served, or a monitor.db")
    report.add_argument("--output", "-o", type=Path, required=True, help="the HTML file to write")
    report.add_argument("--window", type=int, default=1000,
                        help="compare the last N logged predictions (default 1000, as serve's --drift-window)")
    report.add_argument("--version", help="the model version to report on (default: the newest logged)")
    report.set_defaults(handler=run_report)
    add_assets_action(actions)


def run_export(args: argparse.Namespace) -> int:
    from kiln.monitor.export import export_log

    rows = export_log(args.source, args.output)
    print(f"wrote {rows} predictions to {args.output}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from kiln.monitor.drift import THRESHOLD
    from kiln.monitor.report import build_monitor_report

    report = build_monitor_report(args.source, args.output, window=args.window, version=args.version)
    drift = report.drift
    worst = drift.input_max
    print(f"{report.model} version {report.version}: {drift.samples} predictions; input PSI max "
          f"{'-' if worst is None else f'{worst:.3f}'}, prediction PSI "
          f"{'-' if drift.prediction is None else f'{drift.prediction:.3f}'} (drift over {THRESHOLD})")
    print(f"written: {report.path}")
    return 0
