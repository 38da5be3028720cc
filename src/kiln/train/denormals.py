"""Denormal floats treated as zero while training on CPU (the FTZ and DAZ modes of x86 and ARM).

Values under 1.2e-38 are computed by the CPU up to a hundred times slower than normal ones. They
appear late in training: once the loss is near zero, Adam's second-moment estimates decay into
them, and an MLP's epochs went from 0.95 s to 2.9 s within two epochs (bench/README.md). Zero is as
good as such a value for training, which is why TensorFlow and JAX flush them by default on CPU.
The mode belongs to the calling thread (and threads it starts afterwards), so ``fit`` turns it on
for the run and restores the previous mode when it returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_DENORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38


def flushes_denormals() -> bool:
    """Whether this thread currently treats denormal floats as zero."""
    return bool((torch.tensor([_DENORMAL]) * 1.0).item() == 0.0)


@contextlib.contextmanager
def flushing_denormals(enabled: bool) -> Iterator[bool]:
    """Flush denormals to zero inside the block when ``enabled`` and the CPU can; yield whether
    they are flushed, and put the thread's previous mode back afterwards."""
    before = flushes_denormals()
    turned_on = enabled and not before and torch.set_flush_denormal(True)
    try:
        yield before or turned_on
    finally:
        if turned_on:
            torch.set_flush_denormal(False)
