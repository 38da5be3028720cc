"""``kiln gate RUN_DIR|URI --require 'test_accuracy>=0.99' --require 'latency_p99_ms<100'
[--format table|markdown|json|junit] [--output FILE]``.

Prints one row per criterion (required, measured, PASS/FAIL, margin) and exits 0 only when every
criterion passes, 1 when one fails, 2 on a usage error (no criteria, a malformed criterion).
``--format`` writes the report for a CI service instead (:mod:`kiln.eval.gate_report`): to stdout,
with the progress lines on stderr so the output parses, or with ``--output FILE`` to that file
while the table still goes to the log. The exit code is the gate's either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
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
    parser.add_argument("--format", choices=("table", "markdown", "json", "junit"), default="table",
                        help="table (default, for people); markdown (a CI job summary, e.g. "
                             "$GITHUB_STEP_SUMMARY); json (every criterion, the verdict and the model); "
                             "junit (JUnit XML for CI test reports: one test case per criterion)")
    parser.add_argument("--output", metavar="FILE",
                        help="write the report in --format to FILE (its folder is created) and keep "
                             "the table on stdout; the exit code is still the gate's")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.cli.args import source
    from kiln.eval.gate_report import render
    from kiln.eval.gate_run import gate_run
    from kiln.runs.gates import describe_failures

    output = _output_path(args.output)
    report = gate_run(source(args.run_dir), args.require, args.split, measure=not args.no_measure)
    # stdout carries the report itself when it is machine-readable and not going to a file
    log = sys.stderr if args.format != "table" and output is None else sys.stdout
    if report.measured:
        print(f"measured now: {', '.join(report.measured)}", file=log, flush=True)
    if output is not None:
        if args.format == "table":
            output.write_text(_table_text(report), encoding="utf-8")
        else:
            output.write_text(render(report, args.format), encoding="utf-8")
    if log is sys.stdout:
        _print_table(report)
    else:
        sys.stdout.write(render(report, args.format))
        sys.stdout.flush()
    if output is not None:
        print(f"{args.format} report written to {output}", file=log)
    if not report.passed:
        print("error: gate failed:\n" + describe_failures(report.results), file=sys.stderr)
        return 1
    print(f"all {len(report.results)} criteria passed", file=log)
    return 0


def _output_path(text: str | None) -> Path | None:
    """``--output FILE``, checked before the gate measures anything (a folder is a usage error)."""
    from kiln.errors import PathError

    if text is None:
        return None
    path = Path(text)
    if path.is_dir():
        raise PathError(f"--output {text} is a directory; name the report file, e.g. {path / 'gate.xml'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _title(report: Any) -> str:
    return f"gates of {report.run_dir.name} (from {report.criteria_from})"


def _print_table(report: Any) -> None:
    from kiln.runs.gates import COLUMNS, gate_rows

    print_table(_title(report), COLUMNS, gate_rows(report.results))


def _table_text(report: Any) -> str:
    """The table as a file holds it: print_table's output, caught (no colours off a terminal)."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        _print_table(report)
    return buffer.getvalue()
