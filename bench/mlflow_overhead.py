"""What MLflow (on by default) costs a run, from the command to the prompt (issue 17).

Three runs, each as a user types it, timed from launching ``kiln train`` to its exit:

* the digits demo (``make demo``: ``configs/digits_mlp.yaml``),
* a short CSV run (scikit-learn's breast-cancer table written to a file, ``data.name=csv``,
  about 2 s of training),

each with the default backends (MLflow on: the embedded SQLite store) and with
``tracking.backends=[jsonl,csv,tensorboard]`` (MLflow off), alternating on/off ``--rounds`` times
after one warm-up pair (it creates the MLflow store). Target: median(on - off) within 1 s.

* with ``--long``, instead: a digits run of about 40 s (600 epochs, no early stopping), past
  ``tracking.mlflow_start_delay`` (30 s), so MLflow's process goes live beside training.

* the CSV run against a tracking server that refuses connections
  (``tracking.uri=http://127.0.0.1:<free port>``) beside MLflow off, alternating likewise.
  Target: within 2 s of off.

The end of a run no longer waits for MLflow: a detached finisher logs the model after the prompt.
It is waited for (``kiln.tracking.finisher.wait_for_finisher``) between rounds, outside the timed
span, so one round's finisher does not load the next round's CPU.

    .venv/bin/python bench/mlflow_overhead.py               # 5 rounds
    .venv/bin/python bench/mlflow_overhead.py --rounds 9
    .venv/bin/python bench/mlflow_overhead.py --long --rounds 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stats import median_ci, verdict

ROOT = Path(__file__).resolve().parent.parent
KILN = [sys.executable, "-m", "kiln"]
OFF = "tracking.backends=[jsonl,csv,tensorboard]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def breast_cancer_csv(path: Path) -> Path:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(path, index=False)
    return path


def timed(args: list[str], output: Path) -> float:
    """Seconds from launching ``kiln train ARGS`` to its exit; then wait for its finisher."""
    from kiln.tracking.finisher import wait_for_finisher

    before = set(output.iterdir()) if output.is_dir() else set()
    started = time.perf_counter()
    result = subprocess.run([*KILN, "train", *args, f"run.output_dir={output}", "run.progress=false", "--quiet"],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"kiln train {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    for run_dir in set(output.iterdir()) - before:
        if run_dir.is_dir():
            wait_for_finisher(run_dir, timeout=600)
    return took


def compare(name: str, on: list[str], off: list[str], rounds: int, output: Path, target: float) -> None:
    timed(on, output / "on")  # warm-up pair: creates the store, fills the page cache
    timed(off, output / "off")
    ons, offs = [], []
    for i in range(rounds):
        pair = [(on, "on", ons), (off, "off", offs)]
        for args, side, into in (pair if i % 2 == 0 else pair[::-1]):  # alternate who goes first
            into.append(timed(args, output / side))
    diffs = [a - b for a, b in zip(ons, offs, strict=True)]
    low, high = median_ci(diffs)
    median = statistics.median(diffs)
    print(f"{name}: on {statistics.median(ons):.2f} s, off {statistics.median(offs):.2f} s (medians of {rounds}); "
          f"on - off median {median:+.2f} s, 95% CI [{low:+.2f}, {high:+.2f}]; "
          f"within {target:g} s: {verdict(median, low, high, target)}")
    print(f"  on:  {' '.join(f'{v:.2f}' for v in ons)}")
    print(f"  off: {' '.join(f'{v:.2f}' for v in offs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--long", action="store_true", help="only the run longer than the start delay")
    parser.add_argument("--epochs", type=int, default=600, help="epochs of the --long digits run")
    options = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        csv = breast_cancer_csv(out / "breast_cancer.csv")
        digits = ["-c", str(ROOT / "configs" / "digits_mlp.yaml")]
        if options.long:
            long = [*digits, f"training.epochs={options.epochs}", "training.early_stopping=null"]
            compare(f"digits, {options.epochs} epochs", long, [*long, OFF], options.rounds, out / "long", 1.0)
            return
        short = ["data.name=csv", f"data.path={csv}", "training.epochs=30", "model.hidden=[32]"]
        compare("digits demo", digits, [*digits, OFF], options.rounds, out / "digits", 1.0)
        compare("CSV run", short, [*short, OFF], options.rounds, out / "csv", 1.0)
        dead = [*short, f"tracking.uri=http://127.0.0.1:{free_port()}"]
        compare("CSV run, server refusing connections", dead, [*short, OFF], options.rounds, out / "dead", 2.0)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
