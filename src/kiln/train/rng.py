"""Seeding and capturing every random number generator, for reproducible and resumable runs."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from kiln import settings

# cuBLAS is deterministic only with a fixed workspace (CUDA's documentation, "Results
# reproducibility"); harmless on CPU. An operator's own value is kept.
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices): what ``run.seed`` promises, so not undone."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Force deterministic kernels inside the block when ``enabled`` (``run.deterministic``).

    These settings belong to the whole process, so the previous ones are put back afterwards:
    torch's deterministic flag and its warn-only mode, ``cudnn.benchmark``, and
    CUBLAS_WORKSPACE_CONFIG (set only when absent, and then removed again).
    """
    if not enabled:
        yield
        return
    flag, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    set_workspace = settings.CUBLAS_WORKSPACE_CONFIG not in os.environ
    if set_workspace:
        os.environ[settings.CUBLAS_WORKSPACE_CONFIG] = CUBLAS_DETERMINISTIC_WORKSPACE
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(flag, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        if set_workspace:
            os.environ.pop(settings.CUBLAS_WORKSPACE_CONFIG, None)


def capture_rng() -> dict[str, Any]:
    """Every RNG state as tensors and plain data (loadable with ``torch.load(weights_only=True)``)."""
    version, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    py_version, py_state, py_gauss = random.getstate()
    return {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "kind": version,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what ``capture_rng`` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable explicit choice is an error."""
    from kiln.errors import ConfigError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device: 'cuda' was asked for but no CUDA GPU is available; use auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("run.device: 'mps' was asked for but MPS is not available; use auto or cpu")
    return torch.device(name)
