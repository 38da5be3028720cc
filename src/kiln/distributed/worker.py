"""The edges of a worker process: torchrun learns why a rank failed, and the group is left."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kiln.distributed.env import launch_env
from kiln.distributed.group import shutdown


@contextlib.contextmanager
def worker_process() -> Iterator[None]:
    """Around a CLI verb run by torchrun: an exception is written to torchrun's error file (so the
    launcher's report names the rank and its error, not just an exit code), and the process group
    is destroyed on the way out. Outside torchrun it does nothing."""
    if not launch_env().launched:
        yield
        return
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, SystemExit) or exc.code not in (0, None):
            from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

            ErrorHandler().record_exception(exc)
        shutdown(wait_for_peers=False)  # a peer may be dead or stuck: do not wait for it
        raise
    # Rank 0 still writes the package and summary after the last collective; a rank that tore
    # its gloo connections down meanwhile was seen to abort at exit ("terminate called without
    # an active exception"), turning a finished job into a failed one. Leave together.
    shutdown(wait_for_peers=True)
