"""Inference cost of a model: latency per sample, size on disk and parameter count.

Latency is measured on the eager model in eval mode on the CPU, after a warm-up (the first calls
pay for allocation and kernel selection), on random inputs of the model's input shape (these
models do no data-dependent work, so values do not change the time). Reported per sample, as
median and 99th percentile over repeated calls, at batch 1 (what one request waits) and 32
(throughput). ``latency_p50_ms``/``latency_p99_ms`` are the batch-1 figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

BATCH_SIZES = (1, 32)
WARMUP = 10
ITERATIONS = 100
COST_METRICS = (
    "latency_p50_ms", "latency_p99_ms", "latency_b1_p50_ms", "latency_b1_p99_ms",
    "latency_b32_p50_ms", "latency_b32_p99_ms", "size_mb", "parameters",
)


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = BATCH_SIZES,
    warmup: int = WARMUP,
    iterations: int = ITERATIONS,
    vocab_size: int | None = None,
) -> dict[str, float]:
    """``latency_b<B>_p50_ms`` and ``latency_b<B>_p99_ms`` (per sample) for each batch size.

    Inputs are random normal, or random token ids below ``vocab_size`` for a language model."""
    model.eval()
    generator = torch.Generator().manual_seed(0)
    out: dict[str, float] = {}
    with torch.inference_mode():
        for batch in batch_sizes:
            if vocab_size is None:
                x = torch.randn(batch, *input_shape, generator=generator)
            else:
                x = torch.randint(vocab_size, (batch, *input_shape), generator=generator)
            for _ in range(warmup):
                model(x)
            times = np.empty(iterations)
            for i in range(iterations):
                start = time.perf_counter()
                model(x)
                times[i] = time.perf_counter() - start
            per_sample_ms = times * 1e3 / batch
            out[f"latency_b{batch}_p50_ms"] = float(np.median(per_sample_ms))
            out[f"latency_b{batch}_p99_ms"] = float(np.percentile(per_sample_ms, 99))
    return out


def model_cost(
    model: nn.Module,
    input_shape: Sequence[int],
    weights: Path,
    iterations: int = ITERATIONS,
    vocab_size: int | None = None,
) -> dict[str, float]:
    """Latency (see :func:`measure_latency`), ``size_mb`` of ``weights`` (10^6 bytes) and
    ``parameters`` (all of them, trainable or not: a frozen layer costs the same to run)."""
    cost = measure_latency(model, input_shape, iterations=iterations, vocab_size=vocab_size)
    if "latency_b1_p50_ms" in cost:
        cost["latency_p50_ms"] = cost["latency_b1_p50_ms"]
        cost["latency_p99_ms"] = cost["latency_b1_p99_ms"]
    cost["size_mb"] = weights.stat().st_size / 1e6
    cost["parameters"] = float(sum(p.numel() for p in model.parameters()))
    return cost
