"""``kiln gate RUN_DIR|URI --require 'test_accuracy>=0.99' --require 'latency_p99_ms<100'``.

Prints one row per criterion (required, measured, PASS/FAIL, margin) and exits 0 only when every
criterion passes, 1 when one fails, 2 on a usage error (no criteria, a malformed criterion).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kiln.cli.common import print_table


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gate", help="check a run against quality and cost criteria (exit 1 if any fails)",
        description="Check a run against criteria such as test_accuracy>=0.99, "
                    "min_class_recall>=0.95, latency_p99_ms<100, size_mb<10. Metrics come from "
                    "summary.json and eval/; eval metrics and inference cost that were not "
                    "measured yet are measured first.",
        allow_abbrev=False,
    )
    parser.add_argument("run_dir", help="a run directory (runs/<name>_<time>/) or models:/NAME@ALIAS | models:/NAME/VERSION")
    parser.add_argument("--require", action="append", default=[], metavar="CRITERION",
                        help="METRIC OP NUMBER with OP one of >=, <=, >, <, == (repeatable); "
                             "replaces the run config's gate.require")
    parser.add_argument("--split", choices=["train", "val", "test"], default="test",
                        help="the split unprefixed eval metrics (min_class_recall, f1_macro...) refer to")
    parser.add_argument("--no-measure", action="store_true",
                        help="only use metrics already recorded; never run eval or time the model")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.cli.args import source
    from kiln.eval.gate_run import gate_run
    from kiln.runs.gates import COLUMNS, describe_failures, gate_rows

    report = gate_run(source(args.run_dir), args.require, args.split, measure=not args.no_measure)
    if report.measured:
        print(f"measured now: {', '.join(report.measured)}")
    print_table(f"gates of {report.run_dir.name} (from {report.criteria_from})", COLUMNS,
                gate_rows(report.results))
    if not report.passed:
        print("error: gate failed:\n" + describe_failures(report.results), file=sys.stderr)
        return 1
    print(f"all {len(report.results)} criteria passed")
    return 0
