"""``kiln report RUN_DIR|URI [--split test] [--no-eval]``: a self-contained report.html."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report", help="write a self-contained report.html for a run", allow_abbrev=False,
        description="Render <run>/report.html (metrics, per-class table, inference cost, exports, "
                    "plots embedded as images). Runs kiln eval first if the split was not evaluated.",
    )
    parser.add_argument("run_dir", help="a run directory (runs/<name>_<time>/) or models:/NAME@ALIAS | models:/NAME/VERSION")
    parser.add_argument("--split", choices=["train", "val", "test"], default="test")
    parser.add_argument("--no-eval", action="store_true", help="only show what is already in the run directory")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.cli.args import source
    from kiln.eval.report import build_report

    path = build_report(source(args.run_dir), args.split, evaluate=not args.no_eval)
    print(f"written: {path}")
    return 0
