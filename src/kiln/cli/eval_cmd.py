"""``kiln eval RUN_DIR [--split test] [--no-plots] [--no-cost] [overrides]``: measure a trained
model on a split: quality metrics, report files and plots under <run>/eval/, inference cost."""

from __future__ import annotations

import argparse
from typing import Any

from kiln.cli.common import print_table


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a trained run on a split", allow_abbrev=False)
    parser.add_argument("run_dir", help="a run directory (runs/<name>_<time>/) or models:/NAME@ALIAS | models:/NAME/VERSION")
    parser.add_argument("--split", choices=["train", "val", "test"], default="test")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (and matplotlib)")
    parser.add_argument("--no-cost", action="store_true", help="skip timing the model (latency, size)")
    parser.set_defaults(handler=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from kiln.cli.args import source
    from kiln.eval.run_eval import evaluate_run

    result = evaluate_run(source(args.run_dir), args.split, args.overrides,
                          plots=not args.no_plots, cost=not args.no_cost)
    print_table(f"{args.split} metrics of {result.run_dir.name}", ["metric", "value"],
                ([k, v] for k, v in result.metrics.items()))
    if result.cost:
        print_table("inference cost (CPU, eager; latency per sample)", ["metric", "value"],
                    ([k, v] for k, v in result.cost.items()))
    print(f"written: {result.path}")
    for path in result.artifacts:
        print(f"written: {path}")
    return 0
