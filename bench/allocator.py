"""What ``run.keep_freed_memory`` (kiln's glibc malloc tuning) is worth: the hand-written loop of
bench/overhead.py on the enhanced CNN, in fresh processes with glibc's default allocator and with
kiln's tuning, alternating round by round (the setting is process-wide and cannot be undone, so
each side needs its own process).

Per side: median seconds per epoch (the first epoch of each process discarded), and per epoch the
minor page faults and the kernel CPU time (``getrusage``), where glibc's default shows up.

    .venv/bin/python bench/allocator.py                 # 8 rounds, CNN, 4,000 samples
    .venv/bin/python bench/allocator.py --rounds 12 --model mlp --samples 40000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

SIDES = ("default", "kiln")


def child(side: str, model: str, samples: int, epochs: int) -> dict[str, list[float]]:
    """One process's run of the hand-written loop: seconds, faults and kernel seconds per epoch."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import overhead

    from kiln.data.build import build_data
    from kiln.train.allocator import keep_freed_memory

    torch.set_num_threads(1)
    if side == "kiln":
        keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = overhead.make_config(model, samples, epochs, Path(tmp))
        data = build_data(cfg.data, cfg.run.seed)
        before = resource.getrusage(resource.RUSAGE_SELF)
        seconds, _ = overhead.run_hand(cfg, data)
        after = resource.getrusage(resource.RUSAGE_SELF)
    per_epoch = len(seconds)
    return {
        "seconds": seconds[1:],
        "faults": [(after.ru_minflt - before.ru_minflt) / per_epoch],
        "kernel": [(after.ru_stime - before.ru_stime) / per_epoch],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3, help="per process; the first is discarded")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.model, args.samples, args.epochs)))
        return 0
    results: dict[str, list[dict[str, list[float]]]] = {side: [] for side in SIDES}
    for r in range(args.rounds):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            done = subprocess.run(
                [sys.executable, __file__, "--child", side, "--model", args.model,
                 "--samples", str(args.samples), "--epochs", str(args.epochs)],
                capture_output=True, text=True, check=True,
            )
            results[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
        line = "  ".join(f"{s} {statistics.median(results[s][-1]['seconds']):.3f} s" for s in SIDES)
        print(f"round {r + 1}/{args.rounds}: {line}", file=sys.stderr, flush=True)

    def median(side: str, key: str) -> float:
        return statistics.median(v for run in results[side] for v in run[key])

    ratios = [statistics.median(k["seconds"]) / statistics.median(d["seconds"])
              for d, k in zip(results["default"], results["kiln"], strict=True)]
    print(f"{datetime.now():%Y-%m-%d %H:%M}; {args.model}, {args.samples:,} samples, 1 torch thread; "
          f"{args.rounds} rounds, one process per side per round, first epoch of each discarded\n")
    print("| malloc | s/epoch (median) | minor page faults per epoch | kernel CPU s per epoch |")
    print("|---|---:|---:|---:|")
    for side, label in zip(SIDES, ("glibc default", "kiln's tuning (run.keep_freed_memory)"), strict=True):
        print(f"| {label} | {median(side, 'seconds'):.3f} | {median(side, 'faults'):,.0f} | {median(side, 'kernel'):.3f} |")
    print(f"\nkiln's tuning / default, per round: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
