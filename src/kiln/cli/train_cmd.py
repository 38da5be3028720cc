"""``kiln train [-c CONFIG] [overrides...] [--quiet] [--run-dir DIR | --resume RUN_DIR] [--nproc N|auto]``:
train one run (on N processes with DDP through torchrun when ``--nproc`` is given).

With ``--run-dir DIR`` (or ``run.dir`` in the config) the run lives in DIR instead of a new
timestamped directory, and the same command does the right thing every time it is run: it starts
the run, resumes it, starts it over from step 0 when it stopped before its first checkpoint, exits
0 at once when it had finished, and refuses (exit 2) a DIR holding a run of another config
(:mod:`kiln.train.fixed_dir`; docs/preemption.md).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from kiln.cli.common import add_config_args, prestart_trackers
from kiln.cli.fit_report import announce, report
from kiln.cli.launch import add_launch_args


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help="train a model from a config", allow_abbrev=False)
    add_config_args(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--run-dir", metavar="DIR",
                        help="train in DIR (run.dir): run again, the same command resumes the run, "
                             "or exits 0 when it finished")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run instead (as `kiln resume`)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume or --run-dir: accept config changes")
    add_launch_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.config import load_config
    from kiln.distributed.worker import worker_process
    from kiln.errors import UsageError

    if args.resume:
        from kiln.cli.resume_cmd import resume_run

        if args.run_dir:
            raise UsageError("--resume and --run-dir name the run twice: pass one",
                             hint="--run-dir DIR alone resumes the run in DIR when there is one")
        if args.config:
            print("note: --resume uses the run's own config.yaml; -c is ignored")
        return resume_run(args.resume, args.overrides, args.allow_config_change, args.quiet, args)
    cfg = load_config(args.config, _overrides(args))
    if _wants_launch(args, cfg.run.device):
        settled = _answer_before_launch(args, cfg) if cfg.run.dir is not None else None
        return settled if settled is not None else _launch(args, cfg)
    prestart_trackers(cfg)
    with worker_process():  # inside torchrun: errors reach its report; the group is left at exit
        return _train(args, cfg)


def _overrides(args: argparse.Namespace) -> list[str]:
    """The config overrides, with ``--run-dir DIR`` as ``run.dir`` (quoted: any path reads back)."""
    return [*args.overrides, *([f"run.dir={json.dumps(args.run_dir)}"] if args.run_dir else [])]


def _train(args: argparse.Namespace, cfg: Any) -> int:
    from kiln.cli.resume_cmd import resume_run
    from kiln.distributed.env import launch_env
    from kiln.train import Trainer
    from kiln.train.ranks.group import join_group
    from kiln.train.ranks.rundir import restarted_run_dir

    if cfg.run.dir is not None:  # decided afresh by every attempt, torchrun's restarts included
        return _train_in_dir(args, cfg)
    if launch_env().restart_count > 0:  # torchrun restarted the job: continue its run directory
        join_group(cfg.distributed, cfg.run.device)
        previous = restarted_run_dir(cfg.run.output_dir)
        if previous is not None:
            return resume_run(str(previous), [], False, args.quiet)
    return report(Trainer(cfg, callbacks=[announce()], quiet=args.quiet).fit())


def _train_in_dir(args: argparse.Namespace, cfg: Any) -> int:
    """Start the run in ``run.dir``, or continue the one there (as ``kiln resume`` would)."""
    from kiln.cli.resume_cmd import continue_run
    from kiln.distributed.group import is_rank_zero
    from kiln.train import Trainer
    from kiln.train.fixed_dir import agreed_choice

    choice = agreed_choice(cfg, args.allow_config_change)  # rank 0's choice, on every rank
    if choice.holds_run:
        return continue_run(str(choice.run_dir), list(choice.overrides), args.allow_config_change, args.quiet)
    if is_rank_zero():
        print(f"starting a new run in {choice.run_dir}", flush=True)
    return report(Trainer(cfg, callbacks=[announce()], quiet=args.quiet).fit())


def _answer_before_launch(args: argparse.Namespace, cfg: Any) -> int | None:
    """Before launching workers for ``run.dir``: refuse a directory that cannot be used (exit 2
    here, not a workers' failure, which a job script would retry), and answer at once, with its
    exit code, for a run that has nothing left to do; None: launch."""
    from kiln.runs.rundir import RunDir
    from kiln.train.fixed_dir import choose
    from kiln.train.resume import plan_resume

    choice = choose(cfg, args.allow_config_change)
    if not choice.holds_run:
        return None
    plan = plan_resume(choice.run_dir, choice.overrides, args.allow_config_change)
    if plan.finished_message is None:
        return None
    print(plan.finished_message, flush=True)
    summary = plan.summary if plan.summary is not None else RunDir(plan.run_dir).read_summary()
    return 0 if summary.finished else 1


def _wants_launch(args: argparse.Namespace, device: str) -> bool:
    from kiln.cli.launch import wants_launch

    return wants_launch(args, device)


def _launch(args: argparse.Namespace, cfg: Any) -> int:
    """Re-run this command on ``--nproc`` processes through torchrun."""
    from kiln.cli.launch import launch
    from kiln.train.ranks.rundir import recorded_run_dir

    argv = ["train", *(["-c", args.config] if args.config else []), *(["--quiet"] if args.quiet else []),
            *(["--debug"] if getattr(args, "debug", False) else []),
            *(["--allow-config-change"] if args.allow_config_change else []), *_overrides(args)]
    fixed = cfg.run.dir
    return launch(args, argv, lambda run_id: fixed if fixed is not None else recorded_run_dir(cfg.run.output_dir, run_id))
