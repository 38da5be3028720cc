"""``kiln train [-c CONFIG] [overrides...] [--quiet] [--resume RUN_DIR]``: train one run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kiln.cli.common import add_config_args, print_table

if TYPE_CHECKING:
    from kiln.train import Callback, FitResult


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help="train a model from a config", allow_abbrev=False)
    add_config_args(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run instead (as `kiln resume`)")
    parser.add_argument("--allow-config-change", action="store_true", help="with --resume: accept config changes")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.config import load_config
    from kiln.train import Trainer

    if args.resume:
        from kiln.cli.resume_cmd import resume_run

        if args.config:
            print("note: --resume uses the run's own config.yaml; -c is ignored")
        return resume_run(args.resume, args.overrides, args.allow_config_change, args.quiet)
    cfg = load_config(args.config, args.overrides)
    return report(Trainer(cfg, callbacks=[announce()], quiet=args.quiet).fit())


def announce() -> Callback:
    """A callback printing where the run lives as soon as it starts."""
    from kiln.train.callback import Callback
    from kiln.train.state import TrainState

    class Announce(Callback):
        def on_fit_start(self, state: TrainState) -> None:
            print(f"run directory: {state.run_dir}", flush=True)

    return Announce()


def report(result: FitResult) -> int:
    """Print the summary table; exit code 1 unless the run completed or stopped early."""
    print_summary(result.summary)
    if result.status not in ("completed", "stopped_early"):
        print(f"training {result.status}: {result.summary.get('stop_reason')}")
        return 1
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    final = summary.get("final", {})
    rows: list[list[Any]] = [
        ["status", summary["status"]],
        ["epochs trained", f"{summary['epochs_trained']} / {summary['max_epochs']}"],
        ["best epoch", summary.get("best_epoch")],
    ]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        if key in final:
            rows.append([f"final {key}", final[key]])
    for key, value in summary.get("test", {}).items():
        rows.append([key, value])
    rows.append(["parameters", f"{summary['parameters']:,}"])
    rows.append(["duration", f"{summary['durations']['total_s']:.1f} s"])
    rows.append(["run directory", summary["run_dir"]])
    if summary.get("stop_reason"):
        rows.append(["stop reason", summary["stop_reason"]])
    print_table("summary", ["", ""], rows, header=False)
