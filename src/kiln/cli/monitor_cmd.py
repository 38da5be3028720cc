"""``kiln monitor export STATE_DIR|RUN_DIR|monitor.db --output FILE.csv|FILE.parquet``.

Reads the prediction log ``kiln serve`` writes (read-only: safe while the server runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kiln.cli.monitor_assets_cmd import add_action as add_assets_action


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "monitor", help="the served model's prediction log and feedback (export)",
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
    add_assets_action(actions)


def run_export(args: argparse.Namespace) -> int:
    from kiln.monitor.export import export_log

    rows = export_log(args.source, args.output)
    print(f"wrote {rows} predictions to {args.output}")
    return 0
