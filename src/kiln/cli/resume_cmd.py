"""``kiln resume RUN_DIR [overrides] [--allow-config-change]``: continue a stopped run exactly."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("resume", help="continue a run from its newest checkpoint", allow_abbrev=False)
    parser.add_argument("run_dir", help="the run directory (or one of its checkpoints)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume even when overrides change settings that alter the run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    return resume_run(args.run_dir, args.overrides, args.allow_config_change, args.quiet)


def resume_run(path: str, overrides: list[str], allow_config_change: bool, quiet: bool) -> int:
    from kiln.cli.train_cmd import announce, report
    from kiln.train import Trainer
    from kiln.train.resume import plan_resume

    plan = plan_resume(path, overrides, allow_config_change)
    if plan.finished_message is not None:
        print(plan.finished_message)
        return 0
    assert plan.checkpoint is not None
    print(f"resuming {plan.run_dir} from checkpoint {plan.checkpoint.path.name}", flush=True)
    trainer = Trainer(plan.config, callbacks=[announce()], quiet=quiet,
                      resume_from=plan.checkpoint, run_dir=plan.run_dir)
    return report(trainer.fit())
