"""``kiln sweep -c BASE -s SWEEP [overrides...]``: a hyperparameter sweep; ``kiln sweep-report
STUDY|SWEEP_DIR``: its results at any time.

Running the same ``kiln sweep`` command again resumes the study. On several machines, run it on
each with the same ``--storage postgresql://...``: they share the trials.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kiln.cli.common import add_config_args, print_table

if TYPE_CHECKING:
    from kiln.sweep import SweepReport

TABLE_ROWS = 30  # the console table's length; trials.csv has every trial


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("sweep", help="search hyperparameters with Optuna", allow_abbrev=False)
    add_config_args(parser)
    parser.add_argument("-s", "--sweep", metavar="SWEEP_FILE",
                        help="the sweep file (method, metric, parameters, ...); see configs/sweeps/")
    parser.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user@host/db "
                        "(default: a SQLite file in the sweep directory)")
    parser.add_argument("--study-name", help="the study to create or resume")
    parser.add_argument("--workers", type=_workers, metavar="N|auto",
                        help="trials run at once on this machine; auto: one worker per visible GPU, "
                             "each pinned with CUDA_VISIBLE_DEVICES (1 worker on a machine without CUDA)")
    parser.add_argument("--gpus-per-worker", type=int, metavar="N",
                        help="GPUs each worker sees (CUDA_VISIBLE_DEVICES), with --workers auto or N")
    parser.add_argument("--n-trials", type=int, help="trials in total, over all workers and machines")
    parser.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots of the report")
    # Internal: how `workers: N` starts each worker process.
    parser.add_argument("--worker", metavar="SWEEP_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(handler=run)

    report = subparsers.add_parser("sweep-report", help="the table, best config and plots of a sweep",
                                   allow_abbrev=False)
    report.add_argument("target", metavar="STUDY|SWEEP_DIR",
                        help="a sweep directory (<output_dir>/sweeps/<study>) or a study name")
    report.add_argument("--storage", help="where the study lives, when it has no sweep directory here")
    report.add_argument("--no-plots", action="store_true", help="skip the plots")
    report.set_defaults(handler=run_report)


def run(args: argparse.Namespace) -> int:
    from kiln.errors import UsageError

    if args.worker:
        return run_worker_process(args.worker, args.worker_index, args.worker_threads)
    if not args.sweep:
        raise UsageError("kiln sweep needs a sweep file: kiln sweep -c BASE.yaml -s SWEEP.yaml [overrides]")
    from kiln.sweep import run_sweep

    outcome = run_sweep(
        args.config, args.sweep, args.overrides, plots=not args.no_plots,
        storage=args.storage, study_name=args.study_name, workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        n_trials=args.n_trials, timeout=args.timeout, echo=_echo,
    )
    show_report(outcome.report)
    if outcome.exit_code == 1:
        print("no trial completed: see the errors in the table (and trials.csv)")
    return outcome.exit_code


def _workers(value: str) -> int | str:
    """``--workers``: a number of at least 1, or ``auto``."""
    if value == "auto":
        return value
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def run_worker_process(sweep_dir: str, index: int, threads: int | None) -> int:
    import torch

    from kiln.sweep import SweepContext
    from kiln.sweep.loop import run_worker

    if threads is not None:
        torch.set_num_threads(threads)
    return run_worker(SweepContext.load(sweep_dir), index, _echo)


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kiln.errors import PathError
    from kiln.sweep import open_report

    if Path(args.target).is_file():  # a missing path may still be a study's name
        raise PathError(f"{args.target} is a file, not a sweep directory",
                        hint="pass the sweep directory (<output_dir>/sweeps/<study>) or a study name")
    _, report = open_report(args.target, args.storage, plots=not args.no_plots)
    show_report(report)
    return 0


def show_report(report: SweepReport) -> None:
    """The trials table (best first), the counts, the best values and the files written."""
    if not report.rows:
        print(f"study {report.study_name} has no trials yet")
        return
    params = [k for k in report.rows[0] if k not in ("trial", "status", report.metric, "epochs",
                                                      "duration_s", "note", "run_dir")]
    columns = ["trial", "status", report.metric, *params, "epochs", "s", "note"]
    rows = [[r["trial"], r["status"], r[report.metric], *(_value(r[p]) for p in params), r["epochs"],
             _value(r["duration_s"]), r["note"]] for r in report.rows[:TABLE_ROWS]]
    more = len(report.rows) - TABLE_ROWS
    title = f"sweep {report.study_name}: {report.direction} {report.metric}"
    print_table(title + (f" (best {TABLE_ROWS}; {more} more in trials.csv)" if more > 0 else ""), columns, rows)
    print("trials: " + ", ".join(f"{n} {s}" for s, n in report.counts.items() if n))
    if report.best is not None:
        best = report.best
        values = ", ".join(f"{p}={v}" for p, v in best["params"].items())
        print(f"best: trial {best['number']}, {report.metric}={best['value']:.6g} with {values}")
    for name, path in report.files.items():
        print(f"  {name}: {path}")
    for name, reason in report.skipped_plots.items():
        print(f"  {name}: not drawn ({reason})")


def _value(value: Any) -> Any:
    """Searched values as written (1e-05, not 0.0000); lists as lists."""
    return f"{value:.4g}" if isinstance(value, float) else value


def _echo(line: str) -> None:
    print(line, flush=True)
