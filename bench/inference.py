"""Inference latency of kiln's reference models in every export format, at batch 1 and 32.

Models: the reference MLP (``configs/mnist_mlp.yaml``: 784 -> 256 -> 128 -> 64 -> 10) and the
enhanced CNN (``configs/mnist_cnn_enhanced.yaml``: conv 64 3x3, pool, dense 128), built by kiln's
model catalog for MNIST-shaped inputs (1 x 28 x 28). The weights are freshly initialised: latency
does not depend on their values, and no data has to be downloaded.

Runtimes, each loaded from the file kiln's exporter writes (``kiln.export``) and run on the CPU:

* ``eager``: the ``nn.Module`` under ``torch.inference_mode``;
* ``torch.export``: ``torch.export.load(model.pt2).module()``;
* ``TorchScript``: ``torch.jit.load`` (legacy);
* ``ORT fp32`` / ``ORT int8``: ONNX Runtime on ``model.onnx`` and its dynamic int8 quantization.

For each runtime and batch size: ``--warmup`` untimed calls, then ``--iterations`` timed calls;
reported per sample (call time / batch size) as median and 99th percentile, in microseconds,
plus the speed-up of the median over eager. Each measurement first waits until other processes
use less than half a core (up to ``--max-wait`` s), because a busy neighbour on a small machine
changes everything; the table says when it did not get quiet.

    .venv/bin/python bench/inference.py                         # both models, defaults below
    .venv/bin/python bench/inference.py --models mlp --iterations 300 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from quiet import wait_quiet  # bench/quiet.py (this folder is on sys.path)

from kiln.config import load_config
from kiln.data.spec import DataSpec
from kiln.models.build import build_model

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"mlp": "mnist_mlp.yaml", "cnn_enhanced": "mnist_cnn_enhanced.yaml"}
SPEC = DataSpec(name="mnist", task="classification", input_shape=(1, 28, 28), num_classes=10)
Run = Callable[[np.ndarray], object]


def runtimes(model: torch.nn.Module, directory: Path) -> dict[str, Run]:
    """Export ``model`` with kiln's exporters into ``directory`` and load every format back."""
    from kiln.export.onnx import export_onnx, onnx_runner
    from kiln.export.quantize import quantize_int8
    from kiln.export.torch_export import export_program, program_runner
    from kiln.export.torchscript import export_torchscript, torchscript_runner

    example = torch.randn(2, *SPEC.input_shape)
    export_onnx(model, example, directory / "model.onnx", None)
    quantize_int8(directory / "model.onnx", directory / "model.int8.onnx")
    export_program(model, example, directory / "model.pt2")
    export_torchscript(model, example, directory / "model.torchscript.pt")

    def eager(x: np.ndarray) -> object:
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return {
        "eager": eager,
        "torch.export": program_runner(directory / "model.pt2"),
        "TorchScript": torchscript_runner(directory / "model.torchscript.pt"),
        "ORT fp32": onnx_runner(directory / "model.onnx"),
        "ORT int8": onnx_runner(directory / "model.int8.onnx"),
    }




def measure(run: Run, batch: int, warmup: int, iterations: int) -> tuple[float, float]:
    x = np.random.default_rng(0).standard_normal((batch, *SPEC.input_shape)).astype(np.float32)
    for _ in range(warmup):
        run(x)
    times = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        run(x)
        times[i] = time.perf_counter() - start
    per_sample_us = times * 1e6 / batch
    return float(np.median(per_sample_us)), float(np.percentile(per_sample_us, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--threads", type=int, help="torch and ORT intra-op threads (default: torch's)")
    parser.add_argument("--max-wait", type=float, default=30.0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}")
    print("| model | runtime | batch | median us/sample | p99 us/sample | vs eager | quiet |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        cfg = load_config(ROOT / "configs" / CONFIGS[name])
        model = build_model(cfg.model, SPEC).eval()
        with tempfile.TemporaryDirectory() as tmp:
            loaded = runtimes(model, Path(tmp))
            for batch in args.batches:
                eager_median = None
                for runtime, run in loaded.items():
                    quiet = wait_quiet(args.max_wait)
                    median, p99 = measure(run, batch, args.warmup, args.iterations)
                    eager_median = eager_median or median
                    print(f"| {name} | {runtime} | {batch} | {median:.1f} | {p99:.1f} "
                          f"| {eager_median / median:.2f}x | {'yes' if quiet else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
