"""What ``run.flush_denormal`` is worth late in a run: the MLP of bench/tracking.py (synthetic
28x28 data, 256-128-64, batch 64, Adam) trained until its loss is near zero, with denormals
flushed (kiln's default) and without, one run after the other in this process (``fit`` sets and
restores the mode). Per epoch: wall seconds; at the end: how many of Adam's state values are
denormal (under 1.18e-38), which is where the slow arithmetic comes from.

    .venv/bin/python bench/denormals.py                  # 30 epochs per side, one torch thread
    .venv/bin/python bench/denormals.py --epochs 40 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import tracking  # the benchmark next door: its run config and event clock
from kiln.data.build import build_data
from kiln.train import Trainer

SMALLEST_NORMAL = 1.18e-38


def run(flush: bool, epochs: int, samples: int) -> tuple[list[float], list[float], int]:
    """Epoch seconds, train loss per epoch and the denormal count in Adam's state at the end."""
    with tempfile.TemporaryDirectory() as tmp:
        args = argparse.Namespace(samples=samples)
        cfg = tracking.run_config("off", args, Path(tmp), epochs)
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"flush_denormal": flush})})
        data = build_data(cfg.data, cfg.run.seed)
        clock = tracking.Clock()
        trainer = Trainer(cfg, data=data, callbacks=[clock], quiet=True)
        trainer.fit()
        assert trainer.components is not None and trainer.state is not None
        state = trainer.components.optimizer.state.values()
        denormal = sum(
            int(((v.abs() < SMALLEST_NORMAL) & (v != 0)).sum())
            for s in state for v in s.values() if torch.is_tensor(v) and v.is_floating_point()
        )
        return clock.seconds, [h["train_loss"] for h in trainer.state.history], denormal


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=40_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{datetime.now():%Y-%m-%d %H:%M}; torch {torch.__version__} ({args.threads} threads); "
          f"{args.epochs} epochs per side\n")
    print("| denormals | epoch s: first 5 (median) | last 5 (median) | slowest | train loss at the end "
          "| denormal values in Adam's state at the end |")
    print("|---|---:|---:|---:|---:|---:|")
    for flush in (True, False):
        seconds, losses, denormal = run(flush, args.epochs, args.samples)
        first, last = sorted(seconds[:5])[2], sorted(seconds[-5:])[2]
        label = "flushed (run.flush_denormal, default)" if flush else "kept (run.flush_denormal=false)"
        print(f"| {label} | {first:.2f} | {last:.2f} | {max(seconds):.2f} | {losses[-1]:.1e} | {denormal:,} |")
        print(f"{label}: " + " ".join(f"{s:.2f}" for s in seconds), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
