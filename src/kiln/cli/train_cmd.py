"""``kiln train [-c CONFIG] [overrides...] [--quiet] [--resume RUN_DIR] [--nproc N]``: train one run
(on N processes with DDP through torchrun when ``--nproc`` is given)."""

from __future__ import annotations

import argparse
from typing import Any

from kiln.cli.common import add_config_args
from kiln.cli.fit_report import announce, report
from kiln.cli.launch import add_launch_args


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
    from kiln.distributed.env import launch_env
    from kiln.train import Trainer
    from kiln.train.ranks.group import join_group
    from kiln.train.ranks.rundir import restarted_run_dir

    if launch_env().restart_count > 0:  # torchrun restarted the job: continue its run directory
        join_group(cfg.distributed, cfg.run.device)
        previous = restarted_run_dir(cfg.run.output_dir)
        if previous is not None:
            return resume_run(str(previous), [], False, args.quiet)
    return report(Trainer(cfg, callbacks=[announce()], quiet=args.quiet).fit())


def _wants_launch(args: argparse.Namespace) -> bool:
    from kiln.cli.launch import wants_launch

    return wants_launch(args)


def _launch(args: argparse.Namespace, output_dir: Any) -> int:
    """Re-run this command on ``--nproc`` processes through torchrun."""
    from kiln.cli.launch import launch
    from kiln.train.ranks.rundir import recorded_run_dir

    argv = ["train", *(["-c", args.config] if args.config else []), *(["--quiet"] if args.quiet else []),
            *(["--debug"] if getattr(args, "debug", False) else []), *args.overrides]
    return launch(args, argv, lambda run_id: recorded_run_dir(output_dir, run_id))
