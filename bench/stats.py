"""Shared by the benchmarks: the confidence interval of a median and the verdict it allows.

On a small shared machine the round-to-round noise is often larger than the effect measured, so a
target is called met or missed only when the whole 95 % interval lies on one side of it.
"""

from __future__ import annotations

import random
import statistics


def median_ci(values: list[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap confidence interval of the median of ``values`` (percentile method)."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def verdict(median: float, low: float, high: float, target: float) -> str:
    """Whether the target is met, and whether the noise lets one say so: the 95 % confidence
    interval of the median per-round ratio decides; when it straddles the target, the median
    alone is reported as a lean, not a verdict."""
    if high <= target:
        return "yes"
    if low > target:
        return "no"
    return f"not settled: the interval straddles it ({'meets' if median <= target else 'misses'} it by the median)"
