"""Joining and leaving the process group, and the few collectives kiln needs.

Every function works in a plain single process too (it then does nothing or returns its input),
so callers never branch on whether the run is distributed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist

from kiln.distributed.env import launch_env

if TYPE_CHECKING:
    from torch._C._distributed_c10d import Store

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` (``World()`` is a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_zero(self) -> bool:
        """Rank 0 alone writes the run directory, logs, trackers and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """The current process group, or a single process when none was joined."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), launch_env().local_rank, str(dist.get_backend()))


def is_rank_zero() -> bool:
    """Rank 0 of the group, or of torchrun's launch before the group is joined."""
    if dist.is_available() and dist.is_initialized():
        return world().is_zero
    return launch_env().rank == 0


class GroupError(RuntimeError):
    """This process could not join the process group; the message says which rank and why.

    A plain RuntimeError, not a ``kiln.errors`` class: this package imports nothing else of kiln.
    ``kiln.train.ranks.group.join_group`` turns it into a DistributedError for users.
    """


def needs_joining() -> bool:
    """True in a process torchrun launched with others that has not joined their group yet."""
    return launch_env().world_size > 1 and not dist.is_initialized()


def setup(backend: str, timeout: float) -> World:
    """Join the process group torchrun prepared (a no-op for a single process or when joined).

    ``backend`` is ``gloo`` or ``nccl`` (chosen by the caller); ``timeout`` (seconds) bounds every
    collective: a rank that died or hangs makes the others fail with an error after that long
    instead of waiting forever. GroupError when the group cannot be joined.
    """
    if not needs_joining():
        return world()
    env = launch_env()
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    limit = timedelta(seconds=timeout)
    try:
        store = _attempt_store(env.restart_count, env.world_size, limit)
        if store is None:
            dist.init_process_group(backend, timeout=limit)
        else:
            dist.init_process_group(backend, store=store, rank=env.rank, world_size=env.world_size, timeout=limit)
    except (RuntimeError, ValueError) as exc:
        raise GroupError(
            f"rank {env.rank} of {env.world_size} could not join the process group ({backend}): {exc}. "
            "Check MASTER_ADDR/MASTER_PORT (or --rdzv-endpoint) and that every node can reach it"
        ) from None
    return world()


def _attempt_store(attempt: int, world_size: int, timeout: timedelta) -> Store | None:
    """torchrun's agent store, with keys private to this attempt (None: let env:// build it).

    The agent keeps one store across ``--max-restarts``; gloo's connection keys of the killed
    attempt would still be in it, and a restarted rank could read a dead peer's address and wait
    for it until the timeout. A prefix per attempt (TORCHELASTIC_RESTART_COUNT) keeps them apart.
    """
    import os

    from torch._C._distributed_c10d import PrefixStore, TCPStore

    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    base = TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False, timeout=timeout,
    )
    return PrefixStore(f"kiln/attempt{attempt}", base)


def shutdown(wait_for_peers: bool = False) -> None:
    """Leave the process group (when joined); ``wait_for_peers`` first meets every rank at a
    barrier, so no rank tears down its connections while another still uses them."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (pickled: keep it small)."""
    if not world().distributed:
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    result: T = box[0]
    return result


def all_gather_object(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order."""
    w = world()
    if not w.distributed:
        return [obj]
    out: list[Any] = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_max(value: int) -> int:
    """The largest ``value`` over ranks (used to agree on a stop). Runs at every training step of
    a distributed run, so it asks torch for the group directly instead of building a World."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return value
    out = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return int(out.item())


def _collective_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def seed_rank(seed: int) -> None:
    """Give ranks other than 0 their own torch stream (dropout masks, augmentation), after the
    model was built from the shared seed; rank 0 keeps the single-process stream."""
    rank = world().rank
    if rank:
        torch.manual_seed(seed + 1_000_003 * rank)
