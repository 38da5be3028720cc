"""SIGKILL training at random moments, resume it, again and again: are the final weights exact?

One uninterrupted reference run, then ``--trials`` independent trials. Each trial is
``kiln.testing.chaos.train_with_kills``: ``kiln train`` in a real subprocess is SIGKILLed after a
random delay (uniform in ``--delay``), ``kiln resume`` continues it and is killed in turn, ``--kills``
times, then the run is left to finish. The config is the kill test's
(``tests/integration/test_kill_resume.py``: a checkpoint every 10 optimizer steps, so kills also
land while checkpoints are being written). A trial passes when every tensor of
``kiln.load_model(run_dir).state_dict()`` is ``torch.equal`` to the reference's and the test
metrics in ``summary.json`` are identical. Trial ``i`` draws its kill delays from
``random.Random(--seed + i)``, so a failing trial is replayed exactly with ``--seed <its seed>
--trials 1`` (modulo timing: a delay is wall time, and where it lands depends on the machine).

Where the kills landed is observed, not controlled: ``train_with_kills`` draws each delay just after
starting the next process, and the benchmark's ``random.Random`` subclass uses that moment to look
at what the killed process left: a ``checkpoints/*.tmp`` directory means the kill landed while a
checkpoint was being written; no run directory means the killed process had not yet committed a
checkpoint (the run was started afresh); a ``summary.json`` means the run had already finished
and the process just launched is a ``kiln resume`` of a finished run, whose kill tests nothing
(``train_with_kills`` keeps relaunching until it has spent all its kills). The new process needs
over a second to import torch before it touches the run directory, so the look is not raced. The
last kill of each trial is followed by no draw and is not classified, so the first two counts are
lower bounds.

A delay counts from the launch, and a kiln process spends its first seconds importing torch and
loading data (about 2 s on an idle 2-core machine, 4 s or more on a busy one), while the whole
6-epoch run trains for only a few seconds: with the kill test's delays (1-4.5 s) on a busy machine
nearly every kill lands in start-up, before the first checkpoint. The classification makes that
visible. For kills that land in training and in checkpoint writes, lengthen the run and move the
window past start-up, and keep the tiny model on one thread so that a busy neighbour does not
stretch its steps tenfold (``--threads`` sets ``OMP_NUM_THREADS`` for the kiln processes)::

    .venv/bin/python bench/kill_resume.py --threads 1 --set training.epochs=200 --delay 3 8

Passing run directories are deleted (``--keep`` keeps them); failing ones and the reference are
kept under ``--work-dir`` and printed. The exit code is 1 when any trial fails.

    .venv/bin/python bench/kill_resume.py                      # 10 trials x 10 kills = 100 kills
    .venv/bin/python bench/kill_resume.py --trials 1 --kills 10 --seed 1234   # the test's trial
    .venv/bin/python bench/kill_resume.py --async-save         # the same with checkpoint.async_save
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from typing_extensions import override

import kiln
from kiln.runs import read_summary
from kiln.testing.chaos import kiln_command, train_with_kills

ROOT = Path(__file__).resolve().parents[1]
# The kill test's config (tests/integration/test_kill_resume.py), repeated here because bench/
# scripts do not import the test suite; keep the two in step.
CONFIG = [
    "run.name=kill", "run.deterministic=true", "run.progress=false",
    "model.hidden=[32]", "model.dropout=0.2", "training.epochs=6", "training.batch_size=16",
    "training.lr=0.01", "checkpoint.every_n_steps=10", "checkpoint.keep_last_n=2",
    "tracking.backends=[csv]",
]


def log(message: str) -> None:
    """Progress notes go to stderr; stdout carries only the markdown report."""
    print(message, file=sys.stderr, flush=True)


class KillObserver(random.Random):
    """``random.Random`` that, at each delay drawn, classifies the previous launch's end.

    The delays are exactly those of ``random.Random(seed)``: ``uniform`` only looks, then defers.
    """

    def __init__(self, seed: int, output_dir: Path) -> None:
        super().__init__(seed)
        self.output_dir = output_dir
        self.draws = 0
        self.mid_write = 0  # the killed process left a half-written checkpoint (*.tmp)
        self.before_first = 0  # the killed process had committed no checkpoint: started afresh
        self.on_finished = 0  # launches (to be killed) of `kiln resume` on a run already finished

    @override
    def uniform(self, a: float, b: float) -> float:
        runs = list(self.output_dir.glob("*/config.yaml"))
        if runs and (runs[0].parent / "summary.json").is_file():
            self.on_finished += 1  # this launch resumes a finished run: its kill tests nothing
        elif self.draws and not runs:  # the first draw follows the first launch: nothing to classify
            self.before_first += 1
        elif runs and any(runs[0].parent.glob("checkpoints/*.tmp")):
            self.mid_write += 1
        self.draws += 1
        return super().uniform(a, b)


@dataclass
class Trial:
    """The outcome of one trial."""

    seed: int
    passed: bool
    kills: int
    launches: int
    mid_write: int
    before_first: int
    on_finished: int
    seconds: float
    problem: str
    run_dir: Path | None


def compare(reference: Path, run_dir: Path) -> str:
    """Empty when the two runs ended identical; otherwise what differs."""
    a, b = kiln.load_model(reference).state_dict(), kiln.load_model(run_dir).state_dict()
    if a.keys() != b.keys():
        return f"different tensors: {sorted(a.keys() ^ b.keys())}"
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    if differ:
        worst = max((a[k] - b[k]).abs().max().item() for k in differ)
        return f"{len(differ)} of {len(a)} tensors differ ({', '.join(differ)}); max |diff| {worst:.3g}"
    test_a, test_b = read_summary(reference).get("test"), read_summary(run_dir).get("test")
    if test_a != test_b:
        return f"weights equal but test metrics differ: {test_a} vs {test_b}"
    return ""


def run_trial(index: int, config: list[str], reference: Path, args: argparse.Namespace) -> Trial:
    """One train_with_kills run, compared with the reference; any error is a failed trial."""
    seed = args.seed + index
    output = args.work_dir / f"trial{index:03d}-seed{seed}"
    observer = KillObserver(seed, output)
    started = time.perf_counter()
    kills = launches = 0
    run_dir: Path | None = None
    try:
        report = train_with_kills(
            config, output, kills=args.kills, rng=observer, delay=(args.delay[0], args.delay[1]), cwd=ROOT,
            timeout=args.timeout,
        )
        kills, launches, run_dir = report.kills, report.launches, report.run_dir
        problem = compare(reference, run_dir)
    except Exception as exc:  # a crash in a resumed process is exactly what a trial must catch
        problem = f"{type(exc).__name__}: {exc}"
        launches = observer.draws
    passed = not problem
    if passed and not args.keep:
        shutil.rmtree(output, ignore_errors=True)
    return Trial(
        seed, passed, kills, launches, observer.mid_write, observer.before_first, observer.on_finished,
        time.perf_counter() - started, problem, None if passed and not args.keep else (run_dir or output),
    )


def reference_run(config: list[str], work_dir: Path, timeout: float) -> Path:
    """The uninterrupted run every trial is compared with."""
    output = work_dir / "reference"
    done = subprocess.run(
        kiln_command("train", *config, f"run.output_dir={output}", "--quiet"),
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise SystemExit(f"the reference run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    (run_dir,) = (p.parent for p in output.glob("*/summary.json"))
    return run_dir


def report(trials: Sequence[Trial], args: argparse.Namespace, reference: Path, seconds: float) -> str:
    """The markdown to paste into bench/README.md."""
    passed = sum(t.passed for t in trials)
    kills = sum(t.kills for t in trials)
    lines = [
        f"{datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__}, Python {platform.python_version()}; "
        f"config: the kill test's{''.join(f' + {o}' for o in args.set)}"
        f"{' + checkpoint.async_save=true' if args.async_save else ''}; "
        f"OMP_NUM_THREADS {os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"delay uniform {args.delay[0]}-{args.delay[1]} s; seeds {args.seed}-{args.seed + len(trials) - 1}; "
        f"{seconds / 60:.1f} min",
        "",
        "| trials passed | SIGKILLs | launches (train + resume) | kills observed mid-write "
        "| kills before the first checkpoint | launches after the run had finished "
        "| s per trial, median |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| **{passed} / {len(trials)}** | {kills} | {sum(t.launches for t in trials)} "
        f"| >= {sum(t.mid_write for t in trials)} | >= {sum(t.before_first for t in trials)} "
        f"| {sum(t.on_finished for t in trials)} | {statistics.median(t.seconds for t in trials):.1f} |",
    ]
    failed = [t for t in trials if not t.passed]
    if failed:
        lines += ["", f"Failed trials (reference run: {reference}):", ""]
        lines += [f"- seed {t.seed}: {t.problem.splitlines()[0] if t.problem else ''} (kept: {t.run_dir})" for t in failed]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="independent trials")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs per trial")
    parser.add_argument("--seed", type=int, default=0, help="trial i draws its delays with seed + i")
    parser.add_argument("--delay", type=float, nargs=2, default=[1.0, 4.5], metavar=("MIN", "MAX"),
                        help="seconds from each launch to its kill, uniform (the kill test's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra config override for every run, reference included (repeatable)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the kiln processes (default: inherited)")
    parser.add_argument("--async-save", action="store_true",
                        help="add checkpoint.async_save=true (the reference run stays synchronous)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where runs go (default: a new kiln-kill-* temp dir, kept)")
    parser.add_argument("--keep", action="store_true", help="keep the run directories of passing trials")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one launch may take to finish")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.kills < 0:
        parser.error("--trials must be at least 1 and --kills at least 0")
    if not 0 < args.delay[0] <= args.delay[1]:
        parser.error(f"--delay: need 0 < MIN <= MAX, got {args.delay}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.work_dir = (args.work_dir or Path(tempfile.mkdtemp(prefix="kiln-kill-"))).resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.threads is not None:
        # train_with_kills starts its processes with this process's environment, so set it here;
        # this script is their only parent and nothing else reads it afterwards.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    base = [*CONFIG, *args.set]
    config = [*base, "checkpoint.async_save=true"] if args.async_save else base
    started = time.perf_counter()
    log(f"work dir {args.work_dir}; reference run (uninterrupted, synchronous saves)...")
    reference = reference_run(base, args.work_dir, args.timeout)
    trials: list[Trial] = []
    for i in range(args.trials):
        trial = run_trial(i, config, reference, args)
        trials.append(trial)
        log(
            f"trial {i + 1}/{args.trials} seed {trial.seed}: {'pass' if trial.passed else 'FAIL'}, "
            f"{trial.kills} kills, {trial.launches} launches, >= {trial.mid_write} mid-write, "
            f">= {trial.before_first} before the first checkpoint, {trial.on_finished} launches "
            f"after the run had finished, {trial.seconds:.1f} s; "
            f"passed so far {sum(t.passed for t in trials)}/{len(trials)}"
            + (f"\n    {trial.problem[:2000]}\n    kept: {trial.run_dir}" if not trial.passed else "")
        )
    print(report(trials, args, reference, time.perf_counter() - started))
    return 0 if all(t.passed for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
