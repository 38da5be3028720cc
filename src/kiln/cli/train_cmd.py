"""``kiln train [-c CONFIG] [overrides...] [--quiet] [--resume RUN_DIR] [--nproc N]``: train one run
(on N processes with DDP through torchrun when ``--nproc`` is given)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kiln.cli.common import add_config_args, print_table
from kiln.distributed.launch import add_launch_args

if TYPE_CHECKING:
    from kiln.train import Callback, FitResult


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help="train a model from a config", allow_abbrev=False)
    add_config_args(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run instead (as `kiln resume`)")
    parser.add_argument("--allow-config-change", action="store_true", help="with --resume: accept config changes")
    add_launch_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.config import load_config
    from kiln.distributed.worker import worker_process

    if args.resume:
        from kiln.cli.resume_cmd import resume_run

        if args.config:
            print("note: --resume uses the run's own config.yaml; -c is ignored")
        return resume_run(args.resume, args.overrides, args.allow_config_change, args.quiet, args)
    cfg = load_config(args.config, args.overrides)
    if _wants_launch(args):
        return _launch(args, cfg.run.output_dir)
    with worker_process():  # inside torchrun: errors reach its report; the group is left at exit
        return _train(args, cfg)


def _train(args: argparse.Namespace, cfg: Any) -> int:
    from kiln.cli.resume_cmd import resume_run
    from kiln.distributed import launch_env, setup
    from kiln.distributed.rundir import restarted_run_dir
    from kiln.train import Trainer

    if launch_env().restart_count > 0:  # torchrun restarted the job: continue its run directory
        setup(cfg.distributed, cfg.run.device)
        previous = restarted_run_dir(cfg.run.output_dir)
        if previous is not None:
            return resume_run(str(previous), [], False, args.quiet)
    return report(Trainer(cfg, callbacks=[announce()], quiet=args.quiet).fit())


def _wants_launch(args: argparse.Namespace) -> bool:
    from kiln.distributed.launch import wants_launch

    return wants_launch(args)


def _launch(args: argparse.Namespace, output_dir: Any) -> int:
    """Re-run this command on ``--nproc`` processes through torchrun."""
    from kiln.distributed.launch import launch
    from kiln.distributed.rundir import recorded_run_dir

    argv = ["train", *(["-c", args.config] if args.config else []), *(["--quiet"] if args.quiet else []),
            *(["--debug"] if getattr(args, "debug", False) else []), *args.overrides]
    return launch(args, argv, lambda run_id: recorded_run_dir(output_dir, run_id))


def announce() -> Callback:
    """A callback printing where the run lives as soon as it starts."""
    from kiln.distributed import is_rank_zero
    from kiln.train.callback import Callback
    from kiln.train.state import TrainState

    class Announce(Callback):
        def on_fit_start(self, state: TrainState) -> None:
            if is_rank_zero():
                print(f"run directory: {state.run_dir}", flush=True)

    return Announce()


def report(result: FitResult) -> int:
    """Print the summary table; exit code 1 unless the run completed or stopped early.
    Only rank 0 of a distributed run prints."""
    from kiln.distributed import is_rank_zero

    if is_rank_zero():
        print_summary(result.summary)
    if result.status not in ("completed", "stopped_early"):
        print(f"training {result.status}: {result.summary.get('stop_reason')}")
        return 1
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    final = summary.get("final", {})
    rows: list[list[Any]] = [
        ["status", summary["status"]],
    ]
    if summary.get("max_steps"):
        rows.append(["steps trained", f"{summary['global_step']} / {summary['max_steps']}"])
    else:
        rows.append(["epochs trained", f"{summary['epochs_trained']} / {summary['max_epochs']}"])
        rows.append(["best epoch", summary.get("best_epoch")])
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        if key in final:
            rows.append([f"final {key}", final[key]])
    for key, value in summary.get("test", {}).items():
        rows.append([key, value])
    batch = summary.get("batch") or {}
    if batch.get("world_size", 1) > 1:
        rows.append(["processes / effective batch", f"{batch['world_size']} / {batch['effective_batch']}"])
    rows.append(["parameters", f"{summary['parameters']:,}"])
    rows.append(["duration", f"{summary['durations']['total_s']:.1f} s"])
    rows.append(["run directory", summary["run_dir"]])
    if summary.get("stop_reason"):
        rows.append(["stop reason", summary["stop_reason"]])
    print_table("summary", ["", ""], rows, header=False)
