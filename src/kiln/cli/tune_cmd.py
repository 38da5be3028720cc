"""``kiln tune lr -c CONFIG [overrides]`` and ``kiln tune batch-size -c CONFIG [overrides]``:
the learning-rate range test and the largest batch that fits, on a copy of the run's model.

Neither changes a config: each prints its suggestion and the override that uses it, and
``--apply OUT.yaml`` writes a new config file that extends CONFIG with the suggestion.
"""

from __future__ import annotations

import argparse
from typing import Any

from kiln.cli.common import add_config_args

DEFAULT_PLOT = "lr_find.png"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("tune", help="find a learning rate or the largest batch that fits",
                                   allow_abbrev=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lr = actions.add_parser("lr", help="the learning-rate range test: a plot and a suggested training.lr",
                            allow_abbrev=False)
    add_config_args(lr)
    lr.add_argument("--min-lr", type=float, default=1e-7, help="the first rate tried (default 1e-7)")
    lr.add_argument("--max-lr", type=float, default=1.0, help="the last rate tried (default 1)")
    lr.add_argument("--steps", type=int, default=100, help="optimizer steps, rates growing exponentially (default 100)")
    lr.add_argument("--plot", default=DEFAULT_PLOT, help=f"the PNG to write (default {DEFAULT_PLOT})")
    lr.add_argument("--apply", metavar="OUT.yaml", help="write a new config extending CONFIG with the suggested training.lr")
    lr.set_defaults(handler=run_lr)
    batch = actions.add_parser("batch-size", help="the largest training.batch_size that fits, 10%% of memory kept free",
                               allow_abbrev=False)
    add_config_args(batch)
    batch.add_argument("--keep-effective-batch", action="store_true",
                       help="keep batch_size x grad_accum: suggest a batch that divides it and the grad_accum that makes it up")
    batch.add_argument("--max-batch-size", type=int, help="search no further (default: the training split's size)")
    batch.add_argument("--steps", type=int, default=2, help="optimizer steps measured per batch size tried (default 2)")
    batch.add_argument("--apply", metavar="OUT.yaml", help="write a new config extending CONFIG with the suggestion")
    batch.set_defaults(handler=run_batch_size)


def run_lr(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kiln.config import load_config
    from kiln.tune import build_workbench, lr_range_test, plot_lr_finding, write_applied
    from kiln.tune.lr_range import lr_schedule

    lr_schedule(args.min_lr, args.max_lr, args.steps)  # refuse bad bounds before any work
    _check_apply(args)
    cfg = load_config(args.config, args.overrides)
    bench = build_workbench(cfg)
    print(f"range test: {args.steps} steps of batch {cfg.training.batch_size} x grad_accum "
          f"{cfg.training.grad_accum}, lr {args.min_lr:g} to {args.max_lr:g} on {bench.device}", flush=True)
    finding = lr_range_test(bench, args.min_lr, args.max_lr, args.steps)
    plot = plot_lr_finding(finding, Path(args.plot))
    print(f"tried {len(finding.lrs)} rates up to {finding.lrs[-1]:.3g}: {finding.stopped}")
    print(f"lowest smoothed loss at lr {finding.min_loss_lr:.3g} (a tenth of it: {finding.min_loss_lr / 10:.3g})")
    print(f"plot: {plot}")
    if finding.suggestion is None:
        print(f"no suggestion: {len(finding.lrs)} steps are too few to find the steepest descent "
              f"(the first 10 and the last are left out); raise --steps or --max-lr")
        return 1
    lr = float(f"{finding.suggestion:.3g}")
    print(f"suggested training.lr: {lr:g} (the steepest descent of the smoothed loss)")
    if args.apply:
        out = write_applied(args.apply, args.config, args.overrides, cfg, {"training.lr": lr})
        print(f"wrote {out}: kiln train -c {out}")
    else:
        print(f"use it with: kiln train {_command(args, {'training.lr': lr})}  (or --apply OUT.yaml)")
    return 0


def run_batch_size(args: argparse.Namespace) -> int:
    from kiln.config import load_config
    from kiln.errors import UsageError
    from kiln.tune import build_workbench, find_batch_size, write_applied

    for flag, value in (("--max-batch-size", args.max_batch_size), ("--steps", args.steps)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    _check_apply(args)
    cfg = load_config(args.config, args.overrides)
    bench = build_workbench(cfg)
    t = cfg.training
    finding = find_batch_size(bench, keep_effective_batch=args.keep_effective_batch, steps=args.steps,
                              max_batch_size=args.max_batch_size)
    print(f"measured: {finding.measured}")
    for attempt in finding.tries:
        peak = f"{attempt.peak_bytes / 2**20:.0f} MiB" if attempt.peak_bytes is not None else attempt.note
        print(f"  batch {attempt.batch_size}: {'fits' if attempt.fits else 'does not fit'} ({peak})")
    print(f"largest batch that fits: {finding.largest} (limited by {finding.limited_by})")
    values: dict[str, Any] = {"training.batch_size": finding.batch_size}
    if args.keep_effective_batch:
        values["training.grad_accum"] = finding.grad_accum
        print(f"keeping the effective batch of {finding.original_effective_batch}: batch_size "
              f"{finding.batch_size} x grad_accum {finding.grad_accum}")
    elif finding.effective_batch != finding.original_effective_batch:
        print(f"note: the effective batch goes from {finding.original_effective_batch} to "
              f"{finding.effective_batch} (batch_size x grad_accum {t.grad_accum}): the learning rate "
              "may need tuning again (kiln tune lr), or pass --keep-effective-batch")
    if args.apply:
        out = write_applied(args.apply, args.config, args.overrides, cfg, values)
        print(f"wrote {out}: kiln train -c {out}")
    else:
        print(f"use it with: kiln train {_command(args, values)}  (or --apply OUT.yaml)")
    return 0


def _check_apply(args: argparse.Namespace) -> None:
    """Refuse ``--apply`` onto an existing file before the search, not after it."""
    from pathlib import Path

    from kiln.errors import PathError

    if args.apply and Path(args.apply).expanduser().exists():
        raise PathError(f"{args.apply} exists: --apply writes a new config file and never changes one",
                        hint="pass a new file name (or delete the old file first)")


def _command(args: argparse.Namespace, values: dict[str, Any]) -> str:
    """The arguments of ``kiln train`` that use ``values``: the config, the overrides given that
    ``values`` does not replace, then ``values``."""
    kept: list[str] = []
    tokens = iter(args.overrides)
    for token in tokens:
        key = token.removeprefix("--").split("=", 1)[0]
        if key in values:
            if token.startswith("--") and "=" not in token:
                next(tokens, None)  # --key value: drop the value too
            continue
        kept.append(token)
    return " ".join([*(["-c", args.config] if args.config else []), *kept,
                     *(f"{k}={v}" for k, v in values.items())])
