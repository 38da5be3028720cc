"""``data.image.cache: memory``: the stores in shared memory, and one count of all they take.

Each split's cache is one ``uint8`` store ``[N, C, H, W]`` in POSIX shared memory (``/dev/shm``: a
tmpfs limited to half the RAM by default, to 64 MB in a Docker container started without
``--shm-size``). torch reserves a store whole when it makes it (``posix_fallocate``: /dev/shm's
free space drops by the store's size at once, before an image is written), so a store that does
not fit fails as it is made, with torch's "unable to allocate shared memory" traceback; and a run
that fills /dev/shm with its stores leaves its DataLoader workers no room for the batches they
pass back through it. Hence one count, when the data is built and before any store is made, of

- every split's store together (train, val and test), not each against the same free space;
- times the ranks on this node: under torchrun each local rank builds its own stores in the same
  /dev/shm (``LOCAL_WORLD_SIZE`` of them).

Against what: the free space when the build started (``free_space``, read by the caller before
its scan). Every rank of a node starts building together, after torchrun's rendezvous, and makes
its stores only once it has read every file, so at that moment none has taken its share yet;
read later, a rank would find its siblings' stores already gone from the free space and count
them twice. Stores this process made earlier are out of it already (reserved whole).

Should /dev/shm still lack room when a store is made (another process took it meanwhile), the
store's own failure is turned into the same ConfigError. Commands that read each image once
(eval, export's parity samples) make no memory cache at all (:func:`one_pass`): it would reserve
a store per split, the training one included, for nothing.
"""

from __future__ import annotations

import math
import mmap
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from kiln.distributed.env import launch_env
from kiln.errors import ConfigError

if TYPE_CHECKING:
    from kiln.config.data_options import DataConfig

SHARED_MEMORY = Path("/dev/shm")  # where Linux keeps POSIX shared memory (a size-limited tmpfs)


class MemoryStore:
    """One split's shared pixels ``[count, *shape]`` and their "filled" flags.

    ConfigError (with the figures and the fixes) when /dev/shm has no room for them.
    """

    def __init__(self, count: int, shape: tuple[int, ...], key: str) -> None:
        size = count * math.prod(shape)
        try:  # made in shared memory directly: share_memory_() would fill private memory first, then copy
            storage = torch.UntypedStorage._new_shared(max(size, 1))  # type: ignore[no-untyped-call]
            self.filled = torch.zeros(count, dtype=torch.bool).share_memory_()  # type: ignore[no-untyped-call]
        except RuntimeError as exc:
            if "shared memory" not in str(exc):
                raise
            free = free_space()
            ranks, said = local_ranks()
            raise refusal({"this split": store_bytes(count, shape)}, free=0 if free is None else free,
                          ranks=ranks, ranks_from=said, cause=str(exc)) from None
        self.pixels = torch.empty(0, dtype=torch.uint8).set_(storage)[:size].view(count, *shape)
        self.key = key  # the pixel_key of the preprocessing the pixels were resized with


def store_bytes(count: int, shape: tuple[int, ...]) -> int:
    """The shared memory a store of ``count`` images of ``shape`` takes: its pixels and its
    flags, each in whole pages."""
    return _pages(count * math.prod(shape)) + _pages(count)


def _pages(size: int) -> int:
    return -(-max(size, 1) // mmap.PAGESIZE) * mmap.PAGESIZE


def free_space() -> int | None:
    """Bytes free in /dev/shm now; None where there is none to check (not Linux)."""
    if not sys.platform.startswith("linux") or not SHARED_MEMORY.is_dir():
        return None
    return shutil.disk_usage(SHARED_MEMORY).free


def local_ranks(environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """How many processes on this node build the same stores, and what said so."""
    launch = launch_env(environ)
    if launch.local_world_size is not None:
        return launch.local_world_size, "LOCAL_WORLD_SIZE"
    if launch.world_size > 1:
        return launch.world_size, "WORLD_SIZE; LOCAL_WORLD_SIZE is not set, so all may share this node"
    return 1, "a single process"


# The share of the available memory the stores may take: the rest is the run's own (its process,
# the loader workers, the batches). Measured: stores of 99 % of it built, then training was killed.
MEMORY_SHARE = 0.8


def available_memory() -> int:
    """Bytes of memory the system could give now without swapping (MemAvailable)."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_shared_memory(sizes: Mapping[str, int], free: int | None, memory: int | None = None) -> None:
    """Refuse (ConfigError) stores of ``sizes`` bytes (by split) that, times the ranks on this
    node, exceed ``free`` (``free_space()`` when the build started; None: nothing to check) or
    ``memory`` (``available_memory()`` then): /dev/shm's pages are memory, and a tmpfs may be
    sized larger than the memory there is, where filling it gets the run killed (SIGKILL, no
    message) by the kernel's out-of-memory killer instead."""
    if free is None:
        return
    ranks, said = local_ranks()
    check(sizes, free=free, ranks=ranks, ranks_from=said)
    need = sum(sizes.values()) * ranks
    if memory is not None and need > memory * MEMORY_SHARE:
        raise ConfigError(
            f"data.image.cache: memory needs {_size(need)} of shared memory, but this machine has "
            f"{_size(memory)} of memory available, of which the stores may take {MEMORY_SHARE:.0%} (the "
            f"run's processes and batches need the rest): {SHARED_MEMORY}'s pages are memory, and "
            "filling them would get the run killed by the out-of-memory killer",
            field="data.image.cache",
            hint="use data.image.cache=disk (or none), or a smaller data.image.size",
        )


def check(sizes: Mapping[str, int], *, free: int, ranks: int = 1, ranks_from: str = "LOCAL_WORLD_SIZE") -> None:
    """The arithmetic of :func:`check_shared_memory`, on the figures it is given."""
    if sum(sizes.values()) * ranks > free:
        raise refusal(sizes, free=free, ranks=ranks, ranks_from=ranks_from)


def refusal(sizes: Mapping[str, int], *, free: int, ranks: int, ranks_from: str,
            cause: str | None = None) -> ConfigError:
    """The error that names the need (each split, the ranks), the free space and the fixes."""
    need = sum(sizes.values()) * ranks
    parts = " + ".join(f"{name} {_size(n)}" for name, n in sizes.items())
    per_node = f", times {ranks} ranks on this node ({ranks_from})" if ranks > 1 else ""
    fewer = "fewer ranks on this node (torchrun --nproc_per_node), " if ranks > 1 else ""
    if ranks > 1 and ranks_from.startswith("WORLD_SIZE"):  # another launcher: it may know better
        fewer += "LOCAL_WORLD_SIZE set to the ranks really on this node, "
    why = f"torch could not reserve it ({cause})" if cause else "a store that does not fit fails as it is made"
    return ConfigError(
        f"data.image.cache: memory needs {_size(need)} of shared memory ({parts}{per_node}), but "
        f"{SHARED_MEMORY} has {_size(free)} free: {why}, and a full {SHARED_MEMORY} leaves the data "
        "loader's workers no room to pass batches",
        field="data.image.cache",
        hint=f"use data.image.cache=disk (or none), a smaller data.image.size, {fewer}or more shared "
             f"memory (in Docker, docker run --shm-size: at least {_size(need)} plus what {SHARED_MEMORY} "
             "holds now)",
    )


def _size(n: int) -> str:
    for unit, scale, digits in (("GiB", 2**30, 2), ("MiB", 2**20, 1)):
        if n >= scale:
            return f"{n / scale:.{digits}f} {unit}"
    return f"{n / 2**10:.1f} KiB"


def one_pass(cfg: DataConfig) -> DataConfig:
    """``cfg`` for a command that reads each image once (eval, export's parity samples): without
    a memory cache, which would reserve shared memory for every split (the training one too)
    only to copy each image through it once. A disk cache stays: a warm one spares the decoding."""
    from kiln.config.image_options import ImageFolderOptions

    if isinstance(cfg, ImageFolderOptions) and cfg.image.cache == "memory":
        return cfg.model_copy(update={"image": cfg.image.model_copy(update={"cache": "none"})})
    return cfg
