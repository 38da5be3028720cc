"""Data-parallel throughput on this machine (1 vs 2 processes), and what 8 GPUs or several nodes
would need, on paper.

Measured: ``kiln train`` (one process) and ``kiln train --nproc 2`` (two gloo processes through
torchrun) side by side, in one run, alternating, ``--repeats`` times each. The figure is training
samples per second of the whole job: each epoch's ``samples_per_sec`` in events.jsonl (all ranks'
samples, reduced) and its median over epochs 2.. (epoch 1 pays for warm-up) and over repeats.
Two models: the default digits MLP (``configs/digits_mlp.yaml``) and the MNIST baseline CNN on
synthetic 1x28x28 data (MNIST itself needs a download). Every process gets one torch thread
(``OMP_NUM_THREADS=1``), so 1 process uses one core and 2 processes use both; "1 process, 2 threads"
is the fair single-process rival on a 2-core machine.

On paper: parameters P of the reference models (kiln's model catalog, configs' settings), the
gradient all-reduce volume per step (a ring all-reduce sends and receives 2(N-1)/N x 4P bytes per
GPU in fp32), forward FLOPs per sample (torch's FlopCounterMode), and the per-GPU batch from which
compute outlasts communication, under the link and GPU assumptions printed with the table.

    .venv/bin/python bench/ddp.py                  # both measurements and the paper table
    .venv/bin/python bench/ddp.py --paper-only     # just the table (instant)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKLOADS = {
    "digits MLP [128,64]": ["-c", "configs/digits_mlp.yaml", "training.early_stopping=null",
                            "training.epochs=6", "model.dropout=0.0"],
    "CNN baseline, synthetic 28x28": [
        "data.name=synthetic", "data.synthetic.n_samples=6000", "model.name=cnn", "model.filters=[32]",
        "model.hidden=[]", "training.batch_size=128", "training.epochs=4",
    ],
}
COMMON = ["run.progress=false", "tracking.backends=[jsonl]", "tracking.system_metrics=false",
          "checkpoint.enabled=false"]
SETUPS = {  # name -> (processes, threads per process)
    "1 process, 1 thread": (1, 1),
    "1 process, 2 threads": (1, 2),
    "2 processes (gloo), 1 thread each": (2, 1),
}


def throughput(args: list[str], processes: int, threads: int, work: Path) -> float:
    """Median job-wide samples/s over epochs 2.. of one run."""
    out = Path(tempfile.mkdtemp(dir=work))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MLFLOW_DISABLE_TELEMETRY": "true"}
    launch = ["--nproc", str(processes)] if processes > 1 else []
    command = [sys.executable, "-m", "kiln", "train", *args, *COMMON, f"run.output_dir={out}", "--quiet", *launch]
    if processes == 1:
        command += [f"training.batch_size={batch_of(args)}"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    (events,) = out.glob("*/logs/events.jsonl")
    rates = [json.loads(line)["metrics"]["samples_per_sec"] for line in events.read_text().splitlines()
             if '"scope":"epoch"' in line.replace(" ", "")]
    return statistics.median(rates[1:])


def batch_of(args: list[str]) -> int:
    """The per-process batch of a workload (both setups keep it: 2 processes double the step)."""
    for token in args:
        if token.startswith("training.batch_size="):
            return int(token.split("=")[1])
    return 32  # configs/digits_mlp.yaml


def measure(repeats: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="kiln-ddp-bench-"))
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"load average at start {os.getloadavg()}")
    for name, args in WORKLOADS.items():
        rates: dict[str, list[float]] = {setup: [] for setup in SETUPS}
        started = time.monotonic()
        for _ in range(repeats):
            for setup, (processes, threads) in SETUPS.items():
                rates[setup].append(throughput(args, processes, threads, work))
        base = statistics.median(rates["1 process, 1 thread"])
        print(f"\n## {name} (per-process batch {batch_of(args)}; {time.monotonic() - started:.0f} s)")
        print("| setup | samples/s (median) | runs | vs 1 process, 1 thread |")
        print("|---|---:|---|---:|")
        for setup, values in rates.items():
            median = statistics.median(values)
            print(f"| {setup} | {median:,.0f} | {', '.join(f'{v:,.0f}' for v in values)} | {median / base:.2f}x |")
    print(f"\nload average at end {os.getloadavg()}")


# --- on paper ------------------------------------------------------------------------------------

# Assumptions (stated in bench/README.md): fp32 gradients, ring all-reduce.
LINKS = {  # name -> (bus bandwidth in bytes/s reached by all-reduce, per-hop latency in s)
    "8 GPUs, one node (NVLink)": (150e9, 8e-6),
    "4 nodes x 8 GPUs (100 Gb/s Ethernet)": (10e9, 30e-6),
}
GPU_FLOPS = 20e12  # sustained fp32/TF32 FLOP/s a small model reaches on a datacenter GPU
STEP_FLOOR = 2e-4  # seconds: kernel launches of forward + backward + optimizer for a few layers


def reference_models() -> dict[str, tuple[int, float]]:
    """name -> (parameters, forward FLOPs per sample), built from kiln's catalog and configs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from kiln.config.loader import load_config
    from kiln.data.spec import DataSpec
    from kiln.models.build import build_model, count_parameters

    specs = {
        "digits_mlp": ("configs/digits_mlp.yaml", DataSpec("digits", "classification", (1, 8, 8), 10)),
        "mnist_cnn_baseline": ("configs/mnist_cnn_baseline.yaml", DataSpec("mnist", "classification", (1, 28, 28), 10)),
        "mnist_cnn_enhanced": ("configs/mnist_cnn_enhanced.yaml", DataSpec("mnist", "classification", (1, 28, 28), 10)),
        "mnist_cnn_optimized": ("configs/mnist_cnn_optimized.yaml", DataSpec("mnist", "classification", (1, 28, 28), 10)),
    }
    out = {}
    for name, (path, spec) in specs.items():
        cfg = load_config(ROOT / path)
        model = build_model(cfg.model, spec).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *spec.input_shape))
        out[name] = (count_parameters(model), float(counter.get_total_flops()))
    return out


def paper() -> None:
    print("\n## On paper: gradient all-reduce per optimizer step (fp32, ring)")
    print(f"GPU compute assumed {GPU_FLOPS / 1e12:.0f} TFLOP/s sustained, step floor {STEP_FLOOR * 1e3:.1f} ms; "
          "training FLOPs per sample = 3 x forward")
    header = "| model | params | grad MB | fwd MFLOP/sample |"
    for link in LINKS:
        header += f" {link}: all-reduce MB/GPU, ms | per-GPU batch where compute >= comm |"
    print(header)
    print("|---" * (4 + 2 * len(LINKS)) + "|")
    for name, (params, flops) in reference_models().items():
        grad = 4 * params
        row = f"| {name} | {params:,} | {grad / 1e6:.3f} | {flops / 1e6:.2f} |"
        for link, (bandwidth, latency) in LINKS.items():
            gpus = 8 if "one node" in link else 32
            volume = 2 * (gpus - 1) / gpus * grad
            comm = volume / bandwidth + 2 * (gpus - 1) * latency
            per_sample = 3 * flops / GPU_FLOPS
            # compute(B) = max(STEP_FLOOR, B * per_sample) must reach comm
            batch = "any (the step floor already exceeds it)" if comm <= STEP_FLOOR else f"{comm / per_sample:,.0f}"
            row += f" {volume / 1e6:.3f} MB, {comm * 1e3:.2f} ms | {batch} |"
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paper-only", action="store_true")
    args = parser.parse_args()
    if not args.paper_only:
        measure(args.repeats)
    paper()


if __name__ == "__main__":
    main()
