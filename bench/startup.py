"""Start-up costs of the ``kiln`` command: ``kiln --help``, and ``kiln train`` up to its first step.

* ``kiln --help``: wall time of the whole process (target under 0.3 s, which needs torch and every
  other heavy library imported lazily), beside ``python -c pass`` and ``python -c "import torch"``
  for reference. The three are interleaved, ``--runs`` times each.
* ``kiln train`` to the first step: from just before the process is launched to the ``time``
  stamp of the first ``metrics`` record with scope ``step`` in ``<run>/logs/events.jsonl``
  (``tracking.log_every_n_steps=1``, so that record is written right after the first optimizer
  step). It includes interpreter start, every import, loading the config, building the data and
  the model, creating the run directory (config, environment capture) and the first
  forward/backward/step itself. The ``fit_start`` record splits it into set-up and first step.
  Two kiln sides alternate: kiln's default trackers (MLflow included, in its own child process)
  and the same without MLflow; each keeps one output directory, as a user's ``runs/`` is, and a
  warm-up run first creates its MLflow store.
  For reference, the same for a hand-written script doing the least the digits MLP needs (import
  torch, load the digits with scikit-learn, build the same MLP and Adam, one step of batch 32),
  which prints ``time.time()`` after its step.

    .venv/bin/python bench/startup.py                 # 10 x --help, 5 x train
    .venv/bin/python bench/startup.py --config configs/digits_mlp.yaml --train-runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # run with the project's venv: .venv/bin/python bench/startup.py
HELP_TARGET = 0.3  # seconds, from the issue

# The least a hand-written script needs to take the first step of configs/digits_mlp.yaml.
HAND_FIRST_STEP = """
import time
import torch
from sklearn.datasets import load_digits
from torch import nn
x, y = load_digits(return_X_y=True)
x, y = torch.as_tensor(x, dtype=torch.float32) / 16, torch.as_tensor(y)
model = nn.Sequential(
    nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1),
    nn.Linear(128, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10),
)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
optimizer.zero_grad()
nn.functional.cross_entropy(model(x[:32]), y[:32]).backward()
optimizer.step()
print(time.time())
"""


def wall(cmd: Sequence[str]) -> float:
    """Seconds from launching ``cmd`` to its exit (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def log_every_key() -> str:
    """Where the config keeps ``log_every_n_steps`` (it moved from training to tracking)."""
    from kiln.config.schema import TrackingConfig

    section = "tracking" if "log_every_n_steps" in TrackingConfig.model_fields else "training"
    return f"{section}.log_every_n_steps"


def time_to_first_step(
    config: Path, output_dir: Path, overrides: Sequence[str]
) -> tuple[float, float, float]:
    """Seconds from launching ``kiln train`` to its ``fit_start`` record, to its first step record,
    and to the process exit (one epoch)."""
    cmd = [
        str(BIN / "kiln"), "train", "-c", str(config), "training.epochs=1",
        f"run.output_dir={output_dir}", *overrides, "--quiet",
    ]
    launched = time.time()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    exited = time.time()
    run_dir = next(
        line.split(":", 1)[1].strip()
        for line in done.stdout.splitlines()
        if line.startswith("run directory:")
    )
    events = Path(run_dir) / "logs" / "events.jsonl"
    records = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
    fit_start = next(r["time"] for r in records if r["event"] == "fit_start")
    first_step = next(
        r["time"] for r in records if r["event"] == "metrics" and r["scope"] == "step"
    )
    return fit_start - launched, first_step - launched, exited - launched


def hand_first_step() -> float:
    """Seconds from launching the hand-written script to the end of its first step."""
    launched = time.time()
    done = subprocess.run(
        [str(BIN / "python"), "-c", HAND_FIRST_STEP], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return float(done.stdout.split()[-1]) - launched


def fmt(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each short command")
    parser.add_argument("--train-runs", type=int, default=5, help="runs of kiln train")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "digits_mlp.yaml")
    args = parser.parse_args(argv)

    commands = {
        "`python -c pass`": [str(BIN / "python"), "-c", "pass"],
        "`python -c \"import torch\"`": [str(BIN / "python"), "-c", "import torch"],
        "`kiln --help`": [str(BIN / "kiln"), "--help"],
    }
    for cmd in commands.values():  # warm the page cache before anything is timed
        wall(cmd)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            times[name].append(wall(cmd))

    key = log_every_key()
    sides = {
        "kiln defaults (trackers jsonl, csv, tensorboard, mlflow)": [f"{key}=1"],
        "without mlflow (`tracking.backends=[jsonl,csv,tensorboard]`)": [
            f"{key}=1", "tracking.backends=[jsonl,csv,tensorboard]",
        ],
    }
    train: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
    hand: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kiln-startup-") as tmp:
        # one output directory per side, reused as a user's runs/ is; a warm-up run creates its
        # MLflow store (a new SQLite store costs seconds of schema migrations, once)
        for i, overrides in enumerate(sides.values()):
            time_to_first_step(args.config, Path(tmp) / str(i), overrides)
        for _ in range(args.train_runs):
            for i, (name, overrides) in enumerate(sides.items()):
                train[name].append(time_to_first_step(args.config, Path(tmp) / str(i), overrides))
            hand.append(hand_first_step())

    help_median = statistics.median(times["`kiln --help`"])
    config = args.config.resolve().relative_to(ROOT) if args.config.resolve().is_relative_to(ROOT) else args.config
    print(f"| command | median s (min-max), {args.runs} runs |")
    print("|---|---:|")
    for name, values in times.items():
        print(f"| {name} | {fmt(values)} |")
    verdict = "met" if help_median < HELP_TARGET else "missed"
    print(f"\n`kiln --help` target < {HELP_TARGET} s: {verdict} ({help_median:.3f} s)\n")
    print(f"`kiln train -c {config} training.epochs=1 {key}=1 --quiet`, median s (min-max), "
          f"{args.train_runs} runs:\n")
    print("| | launch to `fit_start` record | launch to first step record | launch to exit |")
    print("|---|---:|---:|---:|")
    for name, values in train.items():
        print(f"| {name} | " + " | ".join(fmt([t[k] for t in values]) for k in range(3)) + " |")
    print(f"| hand-written script, digits MLP | | {fmt(hand)} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
