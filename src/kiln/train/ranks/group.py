"""Joining the process group as a run's config says: the backend for its device, its timeout, and
errors a user can act on (``kiln.distributed`` itself raises plain exceptions)."""

from __future__ import annotations

import torch

from kiln.config.schema import DistributedConfig
from kiln.distributed.group import GroupError, World, needs_joining, setup, world
from kiln.errors import ConfigError, DistributedError


def choose_backend(name: str, device: str) -> str:
    """``auto``: NCCL when the run uses CUDA, gloo otherwise. NCCL without a GPU is an error."""
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if name == "auto":
        return "nccl" if cuda else "gloo"
    if name == "nccl" and not cuda:
        raise ConfigError(
            "distributed.backend: 'nccl' needs CUDA GPUs and run.device auto or cuda; "
            "use gloo (or auto) on CPU"
        )
    return name


def join_group(cfg: DistributedConfig, device: str) -> World:
    """Join the process group torchrun prepared (a no-op for a single process or when joined).

    ``cfg.timeout`` bounds every collective: a rank that died or hangs makes the others fail with
    an error after that many seconds instead of waiting forever.
    """
    if not needs_joining():  # one process, or joined already: the backend is not even chosen
        return world()
    try:
        return setup(choose_backend(cfg.backend, device), cfg.timeout)
    except GroupError as exc:
        raise DistributedError(str(exc)) from None
