"""TPE with median pruning against the full grid, on the digits MLP: how much compute does TPE
spend to get within 0.5 percentage points of the grid's best validation accuracy?

Compute is counted in trial-epochs (one epoch of one trial), which does not depend on the machine
or on what else it is doing. Both searches run through ``kiln.sweep.run_sweep`` exactly as
``kiln sweep`` would, with ``configs/digits_mlp.yaml`` as the base config (up to 40 epochs, early
stopping on val_loss with patience 8, so runs may end before 40):

1. the shipped grid, ``configs/sweeps/digits_grid.yaml``: lr {1e-4, 1e-3, 1e-2} x batch size
   {16, 32, 64} x dropout {0.3, 0.5}, 18 trials. Its compute is the sum of the epochs every trial
   trained; its best val_accuracy is the reference;
2. the shipped TPE search, ``configs/sweeps/digits_tpe.yaml`` (lr log-uniform in [1e-5, 1e-2],
   batch size in {16, 32, 64, 128}, dropout uniform in [0.1, 0.5], median pruning), once per seed
   in ``--seeds``. Its trials are taken in the order they finished; after each, the compute so far
   (the epochs of finished trials, and of pruned ones up to the epoch they were stopped at) and the
   best val_accuracy so far. The figure is the compute when the best first comes within
   ``--tolerance`` of the grid's best (``not reached`` if it never does within ``n_trials``).

A trial's value is the val_accuracy of the model it ends with (the best epoch's, as early stopping
restores it), as in every kiln sweep. Only the events.jsonl tracker is on: MLflow and TensorBoard
cost seconds per trial and are not what is measured. One worker, so the TPE sampler sees every
finished trial before it proposes the next one (with more workers it proposes with less
information, and its figure would depend on timing).

The studies live in ``--work-dir`` (SQLite), so an interrupted benchmark resumes where it stopped
when run again with the same ``--work-dir``. ``--quick`` checks that the benchmark runs (3 epochs,
6 TPE trials, one seed); its figures mean nothing.

    .venv/bin/python bench/sweep.py --work-dir runs/bench_sweep                # grid + 3 TPE seeds
    .venv/bin/python bench/sweep.py --work-dir runs/bench_sweep --seeds 0 1 2 3 4
    .venv/bin/python bench/sweep.py --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "digits_mlp.yaml"
GRID = ROOT / "configs" / "sweeps" / "digits_grid.yaml"
TPE = ROOT / "configs" / "sweeps" / "digits_tpe.yaml"


@dataclass(frozen=True)
class Search:
    name: str
    trials: int  # trials that trained (completed, pruned or failed)
    epochs: int  # trial-epochs spent in all
    best: float  # best val_accuracy found
    reach_trials: int | None = None  # trials until within the tolerance of the grid's best
    reach_epochs: int | None = None  # trial-epochs until then
    pruned: int = 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def trial_epochs(trial: Any) -> int:
    """Epochs a trial trained: all of them, or up to the epoch it was pruned at."""
    if "epochs" in trial.user_attrs:
        return int(trial.user_attrs["epochs"])
    return len(trial.intermediate_values)  # failed or interrupted: the epochs it reported


def run(sweep_file: Path, study: str, args: argparse.Namespace, **replace: Any) -> list[Any]:
    """Run (or resume) one sweep and return its trials in the order they finished."""
    from optuna.trial import TrialState

    from kiln.sweep import run_sweep

    overrides = [f"run.output_dir={args.work_dir}", "run.progress=false", "tracking.backends=[jsonl]",
                 "tracking.system_metrics=false", *args.set]
    started = time.perf_counter()
    outcome = run_sweep(BASE, sweep_file, overrides, study_name=study, plots=False,
                        echo=lambda line: log(f"  {study}: {line}"), **replace)
    if outcome.exit_code != 0:
        raise SystemExit(f"{study} ended with exit code {outcome.exit_code}")
    log(f"{study}: {time.perf_counter() - started:.0f} s")
    from kiln.sweep.runner import load_study

    trials = load_study(outcome.ctx).get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            and t.datetime_complete is not None and t.user_attrs.get("status") not in ("duplicate", "surplus")]
    return sorted(done, key=lambda t: t.datetime_complete)


def measure(name: str, trials: list[Any], target: float | None) -> Search:
    from optuna.trial import TrialState

    spent = 0
    best = float("-inf")
    reach: tuple[int, int] | None = None
    for count, trial in enumerate(trials, start=1):
        spent += trial_epochs(trial)
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            best = max(best, float(trial.value))
        if reach is None and target is not None and best >= target:
            reach = (count, spent)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    reach_trials, reach_epochs = reach if reach is not None else (None, None)
    return Search(name, len(trials), spent, best, reach_trials, reach_epochs, pruned)


def report(grid: Search, tpe: Sequence[Search], args: argparse.Namespace, seconds: float) -> str:
    import optuna
    import torch

    target = grid.best - args.tolerance
    lines = [
        f"Sweeps on the digits MLP ({BASE.relative_to(ROOT)}), {datetime.now():%Y-%m-%d %H:%M}; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, optuna "
        f"{optuna.__version__}, Python {platform.python_version()}; {seconds / 60:.1f} min in all"
        + (" (--quick: figures mean nothing)" if args.quick else ""),
        "",
        f"Target: val_accuracy >= {target:.4f} (the grid's best {grid.best:.4f} less "
        f"{args.tolerance * 100:.1f} pp). Compute in trial-epochs.",
        "",
        "| search | trials to target | trial-epochs to target | share of the grid's compute "
        "| trials run | pruned | best val_accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| grid, {grid.trials} points | - | - | - | {grid.trials} | 0 | {grid.best:.4f} |",
    ]
    for s in tpe:
        if s.reach_epochs is None:
            to_target = "| not reached | - | - |"
        else:
            to_target = f"| {s.reach_trials} | {s.reach_epochs} | {s.reach_epochs / grid.epochs:.0%} |"
        lines.append(f"| {s.name} {to_target} {s.trials} | {s.pruned} | {s.best:.4f} |")
    lines.append(f"\nThe full grid spent {grid.epochs} trial-epochs.")
    reached = [s.reach_epochs for s in tpe if s.reach_epochs is not None]
    if reached:
        median = statistics.median(reached)
        lines.append(
            f"TPE with median pruning reached the target in {len(reached)} of {len(tpe)} seeds; "
            f"median {median:g} trial-epochs, {median / grid.epochs:.0%} of the grid's compute."
        )
    else:
        lines.append(f"TPE with median pruning did not reach the target in any of {len(tpe)} seeds.")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="TPE seeds (one search each)")
    parser.add_argument("--tolerance", type=float, default=0.005, help="0.005 = 0.5 percentage points")
    parser.add_argument("--n-trials", type=int, default=None, help="TPE trials per seed (default: the sweep file's)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keeps the studies (default: a temporary dir)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--quick", action="store_true", help="a short check that the benchmark runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.set = ["training.epochs=3", *args.set]
        args.seeds = args.seeds[:1]
        args.n_trials = args.n_trials or 6
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.work_dir = (args.work_dir or Path(tempfile.mkdtemp(prefix="kiln-bench-sweep-"))).resolve()
    log(f"work dir: {args.work_dir}")
    started = time.perf_counter()
    grid = measure("grid", run(GRID, "bench-grid", args), None)
    tpe = []
    for seed in args.seeds:
        name = f"bench-tpe-seed{seed}"
        trials = run(TPE, name, args, seed=seed, n_trials=args.n_trials)
        tpe.append(measure(f"TPE + median pruning, seed {seed}", trials, grid.best - args.tolerance))
    print(report(grid, tpe, args, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
