"""``kiln runs [--output-dir runs]``: list runs, newest first, with their key metrics.

It reads only each run's own files, never MLflow, so it races nobody; its ``mlflow`` column says
when a run's MLflow side is still finishing in the background or needs ``kiln sync``.
"""

from __future__ import annotations

import argparse
from typing import Any

from kiln.cli.common import print_table


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("runs", help="list runs and their key metrics", allow_abbrev=False)
    parser.add_argument("--output-dir", default="runs", help="where runs live (run.output_dir)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.cli.args import output_dir
    from kiln.runs.rundir import list_runs
    from kiln.tracking.finisher import state

    runs = list_runs(output_dir(args.output_dir))
    if not runs:
        print(f"no runs in {args.output_dir}/ yet: start one with `kiln train`")
        return 0
    rows: list[list[Any]] = []
    for info in runs:
        s = info.summary
        if s is None:  # still going, killed, or its summary.json is damaged: info.state says which
            rows.append([info.name, info.state, None, None, None, None, None, state(info.path)])
            continue
        rows.append([
            info.name, s.status, s.epochs_trained, s.best_epoch,
            s.final.get("val_loss"), s.final.get("val_accuracy"), s.test.get("test_accuracy"), state(info.path),
        ])
    columns = ["run", "status", "epochs", "best", "val_loss", "val_acc", "test_acc", "mlflow"]
    print_table(f"runs in {args.output_dir}/", columns, rows)
    return 0
