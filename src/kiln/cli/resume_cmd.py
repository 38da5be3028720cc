"""``kiln resume RUN_DIR [overrides] [--allow-config-change] [--nproc N]``: continue a stopped run
exactly (on N processes through torchrun with ``--nproc``; a different N warns that the data order
then differs). A run stopped before its first checkpoint starts over from step 0 in its directory.

Exit 0 when the run ends completed or stopped early, also when it had finished before; 1 when it
fails, or had failed (NaN: resuming exactly would fail the same way)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.cli.launch import add_launch_args

if TYPE_CHECKING:
    from kiln.train.resume import ResumePlan


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "resume", help="continue a run from its newest checkpoint (from step 0 when it has none)", allow_abbrev=False,
    )
    parser.add_argument("run_dir", help="the run directory (or one of its checkpoints)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume even when overrides change settings that alter the run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_launch_args(parser)
    parser.set_defaults(handler=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    return resume_run(args.run_dir, args.overrides, args.allow_config_change, args.quiet, args)


def resume_run(
    path: str, overrides: list[str], allow_config_change: bool, quiet: bool,
    launch_args: argparse.Namespace | None = None,
) -> int:
    """Resume ``path``; ``launch_args`` carrying ``--nproc N`` re-runs it on N processes."""
    from kiln.cli.args import run_dir
    from kiln.cli.launch import launch, wants_launch
    from kiln.distributed.worker import worker_process

    run_dir(path, up=2)  # a run, its checkpoints/ or one checkpoint; anything else is a usage error
    if launch_args is not None and wants_launch(launch_args, _run_device(path)):
        argv = ["resume", str(path), *(["--quiet"] if quiet else []),
                *(["--allow-config-change"] if allow_config_change else []), *overrides]
        return launch(launch_args, argv, lambda run_id: None)
    with worker_process():  # inside torchrun: errors reach its report; the group is left at exit
        return continue_run(path, overrides, allow_config_change, quiet)


def continue_run(path: str, overrides: list[str], allow_config_change: bool, quiet: bool) -> int:
    """In this process (a torchrun worker, or the only one): resume, start over or report the
    run finished; the exit code."""
    from kiln.cli.common import prestart_trackers
    from kiln.cli.fit_report import announce, report
    from kiln.distributed.group import is_rank_zero
    from kiln.runs.rundir import RunDir
    from kiln.train.ranks.resume_choice import agreed_resume_plan
    from kiln.train.resume_run import resume

    plan = agreed_resume_plan(path, overrides, allow_config_change)  # rank 0's choice, on every rank
    if plan.finished_message is not None:
        if is_rank_zero():
            print(plan.finished_message, flush=True)
        summary = plan.summary if plan.summary is not None else RunDir(plan.run_dir).read_summary()
        return 0 if summary.finished else 1
    if is_rank_zero():
        print(_starting(plan), flush=True)
        prestart_trackers(plan.config)
    return report(resume(plan, callbacks=[announce()], quiet=quiet))


def _starting(plan: ResumePlan) -> str:
    """What resuming ``plan`` does, in one line."""
    if plan.checkpoint is not None:
        return f"resuming {plan.run_dir} from checkpoint {plan.checkpoint.path.name}"
    ended = f" ({plan.summary.status})" if plan.summary is not None else ""
    return (f"restarting {plan.run_dir} from step 0: it stopped{ended} before its first checkpoint, "
            "so there is nothing of it to continue from")


def _run_device(path: str | Path) -> str:
    """The resumed run's run.device (``--nproc auto`` honours ``cpu``); auto when unreadable."""
    from kiln.errors import KilnError
    from kiln.runs import RunDir

    root = Path(path)
    for candidate in (root, root.parent, root.parent.parent):
        if (candidate / "config.yaml").is_file():
            try:
                return str(RunDir(candidate).read_config().run.device)
            except KilnError:  # a damaged config is reported by the resume itself
                return "auto"
    return "auto"
