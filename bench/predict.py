"""``kiln predict`` on a 1,000,000-row CSV against a hand-written loop, and its memory against
the same job on 100,000 rows (issue 20's targets).

The model is the digits MLP (``configs/digits_mlp.yaml``, trained here for 3 epochs, exported to
ONNX with kiln's parity check); the inputs are scikit-learn's digit rows, repeated, as 64 float
columns plus an id column. Two jobs, each a fresh process that reads the file and writes a CSV of
the predicted class and its probability:

* ``kiln``: ``kiln predict RUN --input in.csv --output out.csv --id-column id --quiet`` (ONNX
  Runtime, its default threads; chunks of 10,000 rows, each synced to disk with a progress record);
* ``hand``: the loop a user would write without kiln: ``pandas.read_csv`` of the whole file, the
  run's normalization, one ONNX Runtime session (default options) over batches of 256, softmax,
  argmax, ``DataFrame.to_csv``. Nothing resumable, no bad-row handling.

Rounds alternate the two (order swapped every round); rows per second is rows / wall time of the
process (start-up included, for both). Peak resident memory is the largest RSS of the process
sampled every 10 ms. The targets: kiln at least 0.9x the hand loop's rows per second (median of per-round
ratios with its 95 % bootstrap interval, ``bench/stats.py``), and kiln's peak memory on 1,000,000
rows within 1.2x of its peak on 100,000.

    .venv/bin/python bench/predict.py                # 5 rounds, 1,000,000 rows
    .venv/bin/python bench/predict.py --rounds 3 --rows 200000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from quiet import wait_quiet  # bench/quiet.py (this folder is on sys.path)
from stats import median_ci

ROOT = Path(__file__).resolve().parents[1]
KILN = [sys.executable, "-m", "kiln"]
HAND = r'''
import json, sys
import numpy as np, pandas as pd, onnxruntime as ort
run, source, output = sys.argv[1:4]
spec = json.load(open(f"{run}/models/model.json"))["data_spec"]
frame = pd.read_csv(source)
x = frame.drop(columns="id").to_numpy(np.float64).reshape(len(frame), *spec["input_shape"])
x = ((x - spec["mean"][0]) / spec["std"][0]).astype(np.float32)  # digits: one mean and std
session = ort.InferenceSession(f"{run}/models/model.onnx", providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
logits = np.concatenate([session.run(None, {name: x[i:i + 256]})[0] for i in range(0, len(x), 256)])
e = np.exp(logits - logits.max(1, keepdims=True))
p = e / e.sum(1, keepdims=True)
pd.DataFrame({"id": frame["id"], "class": p.argmax(1), "probability": p.max(1)}).to_csv(output, index=False)
'''


def prepare(directory: Path, rows: list[int]) -> tuple[Path, dict[int, Path]]:
    """A trained, exported digits run and one CSV per row count."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from sklearn.datasets import load_digits

    done = subprocess.run([*KILN, "train", "-c", str(ROOT / "configs/digits_mlp.yaml"), "training.epochs=3",
                           f"run.output_dir={directory / 'runs'}", "tracking.backends=[jsonl]",
                           "checkpoint.enabled=false", "run.progress=false", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (run,) = (directory / "runs").iterdir()
    done = subprocess.run([*KILN, "export", str(run), "--format", "onnx"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    digits = load_digits().data / 16.0
    files = {}
    for count in rows:
        values = np.resize(digits, (count, 64))
        table = pa.table({"id": pa.array(np.arange(count)), **{f"p{i}": values[:, i] for i in range(64)}})
        files[count] = directory / f"in_{count}.csv"
        pacsv.write_csv(table, files[count])
    return run, files


def measure(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident MiB of one process.

    The peak is the largest RSS sampled every 10 ms (psutil), not the child's ``ru_maxrss``: Linux
    carries a process's high-water mark across ``exec``, so a child forked from this benchmark
    (which holds the generated table) would report the parent's size, whatever it then did.
    """
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    return seconds, peak // (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    parser.add_argument("--max-wait", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        run, files = prepare(directory, [args.rows, args.small_rows])
        big, small = files[args.rows], files[args.small_rows]
        out = directory / "out.csv"
        kiln = [*KILN, "predict", str(run), "--input", str(big), "--output", str(out), "--id-column", "id",
                "--quiet", "--overwrite"]
        hand = [sys.executable, "-c", HAND, str(run), str(big), str(out)]
        ratios, rates, memory = [], {"kiln": [], "hand": []}, {"kiln": [], "hand": [], "kiln_small": []}
        for index in range(args.rounds):
            quiet = wait_quiet(args.max_wait)
            order = [("kiln", kiln), ("hand", hand)] if index % 2 == 0 else [("hand", hand), ("kiln", kiln)]
            seconds = {}
            for name, command in order:
                seconds[name], peak = measure(command)
                rates[name].append(args.rows / seconds[name])
                memory[name].append(peak)
            small_command = [*kiln[:6], str(small), *kiln[7:]]
            memory["kiln_small"].append(measure(small_command)[1])
            ratios.append(seconds["hand"] / seconds["kiln"])
            print(f"round {index + 1}: kiln {rates['kiln'][-1]:,.0f} rows/s, hand {rates['hand'][-1]:,.0f} rows/s, "
                  f"ratio {ratios[-1]:.3f}; peak MiB kiln {memory['kiln'][-1]} (small {memory['kiln_small'][-1]}), "
                  f"hand {memory['hand'][-1]}{'' if quiet else ' (machine not quiet)'}", flush=True)
    low, high = median_ci(ratios)
    median = statistics.median(ratios)
    growth = statistics.median(memory["kiln"]) / statistics.median(memory["kiln_small"])
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.rounds} rounds")
    print(f"rows/s median: kiln {statistics.median(rates['kiln']):,.0f}, hand {statistics.median(rates['hand']):,.0f}")
    print(f"kiln / hand rows per second: median {median:.3f}, 95% CI [{low:.3f}, {high:.3f}]; "
          f">= 0.9: {'yes' if low >= 0.9 else ('no' if high < 0.9 else 'not settled')}")
    print(f"peak RSS MiB (median): kiln {statistics.median(memory['kiln'])} on {args.rows:,} rows, "
          f"{statistics.median(memory['kiln_small'])} on {args.small_rows:,} ({growth:.2f}x; target <= 1.2x); "
          f"hand {statistics.median(memory['hand'])} on {args.rows:,}")


if __name__ == "__main__":
    main()
