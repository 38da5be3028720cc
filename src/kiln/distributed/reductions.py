"""Sums over ranks of nested metric states: the exact global mean, not a mean of rank means.

A meter keeps *sums* and a count; summing those over ranks and only then dividing gives the job's
mean exactly, which averaging each rank's mean would not when the ranks saw different numbers of
samples (the last batch, an uneven validation shard).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from kiln.distributed.group import all_gather_object


def reduce_state(state: dict[str, Any]) -> dict[str, Any]:
    """Sum every number and tensor of a (meter's) state over ranks (one small collective).

    States are gathered whole rather than all-reduced as one flat tensor, because a rank that saw
    no sample (an empty validation shard) has no sums yet: a key missing on a rank counts as 0.
    Summing in rank order on every rank gives bit-identical totals everywhere.
    Non-numeric leaves (bools, strings) describe the meter, not data: rank 0's are kept.
    Tensors travel pickled, so pass CPU tensors (a CUDA one would land on the same device index).
    """
    states = all_gather_object(state)
    total = states[0]
    for other in states[1:]:
        total = _add(total, other)
    return dict(total)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _add(a[k], b[k]) if k in a and k in b else (a[k] if k in a else b[k]) for k in {**a, **b}}
    if isinstance(a, bool) or isinstance(b, bool):
        return a
    if isinstance(a, (Tensor, int, float)) and isinstance(b, (Tensor, int, float)):
        return a + b
    return a
