"""``kiln monitor assets [RUN_DIR|models:/NAME@ALIAS] --output DIR [--accuracy-threshold 0.95]
[--latency-p99-ms 250] [--error-rate 0.01] [--drift-psi 0.2] [--min-samples 100] [--job NAME]``.

Writes ``DIR/prometheus-rules.yml`` and ``DIR/grafana-dashboard.json`` with thresholds from the
options, else the model's ``gate.require``, else documented defaults (:mod:`kiln.monitor.assets`),
and prints where each threshold came from.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_action(actions: Any) -> None:
    """Add ``assets`` to the ``kiln monitor`` actions."""
    from kiln.monitor.assets import DEFAULTS

    assets = actions.add_parser(
        "assets", help="write a Grafana dashboard and Prometheus alert rules for kiln serve",
        description="Write DIR/grafana-dashboard.json (request rate, 5xx share, latency "
                    "percentiles, live accuracy, recall per class, drift, predicted classes, "
                    "confidence) and DIR/prometheus-rules.yml (accuracy under the gate, drift, "
                    "5xx share, p99 latency). A threshold comes from its option, else from the "
                    "model's gate.require (test_accuracy>=X, latency_p99_ms<N), else the default.",
        allow_abbrev=False,
    )
    assets.add_argument("model", nargs="?", help="a run directory or models:/NAME@ALIAS whose "
                                                 "gate.require sets the thresholds (default: none)")
    assets.add_argument("--output", "-o", type=Path, required=True, help="directory to write both files to")
    assets.add_argument("--accuracy-threshold", type=float, metavar="SHARE",
                        help=f"alert when live accuracy is under this (default: the gate's, else "
                             f"{DEFAULTS['accuracy']:g})")
    assets.add_argument("--min-samples", type=int, metavar="N",
                        help=f"...and the accuracy window holds at least N feedback labels "
                             f"(default {DEFAULTS['min_samples']:g})")
    assets.add_argument("--latency-p99-ms", type=float, metavar="MS",
                        help=f"alert when /predict's p99 passes this (default: the gate's "
                             f"latency_p99_ms, else {DEFAULTS['latency_p99_ms']:g})")
    assets.add_argument("--error-rate", type=float, metavar="SHARE",
                        help=f"alert when this share of /predict and /feedback answers are 5xx "
                             f"(default {DEFAULTS['error_rate']:g})")
    assets.add_argument("--drift-psi", type=float, metavar="PSI",
                        help=f"alert when an input or prediction PSI passes this "
                             f"(default {DEFAULTS['drift_psi']:g})")
    assets.add_argument("--job", help="scope the rules to this Prometheus job label (default: "
                                      "every server Prometheus scrapes)")
    assets.set_defaults(handler=run_assets)


def run_assets(args: argparse.Namespace) -> int:
    from kiln.monitor.assets import model_criteria, thresholds, write_assets

    overrides = {"accuracy": args.accuracy_threshold, "min_samples": args.min_samples,
                 "latency_p99_ms": args.latency_p99_ms, "error_rate": args.error_rate,
                 "drift_psi": args.drift_psi}
    if args.job is not None and not args.job.strip():
        from kiln.errors import UsageError

        raise UsageError("--job is empty: name the job of your scrape config, or leave it out")
    criteria: list[str] = []
    if args.model is not None:
        from kiln.cli.args import source

        criteria = model_criteria(source(args.model))
    limits = thresholds(criteria, overrides, job=args.job)
    title = f"kiln serving: {_name(args.model)}" if args.model else "kiln serving"
    written = write_assets(args.output, limits, title)
    print(f"gate.require: {', '.join(criteria) if criteria else '(none)'}")
    for name, bound in (("accuracy", limits.accuracy), ("latency p99 ms", limits.latency_p99_ms),
                        ("5xx share", limits.error_rate), ("drift PSI", limits.drift_psi)):
        print(f"  {name:<15} alert when {bound.alert_op} {bound.value:g}  ({bound.source})")
    print(f"  {'min samples':<15} {limits.min_samples} feedback labels before an accuracy alert")
    for path in written:
        print(f"wrote {path}")
    return 0


def _name(model: str) -> str:
    """What the dashboard's title calls the model: a URI as given, a directory by its name."""
    return model if model.startswith("models:/") else Path(model).resolve().name
