"""The edges of a worker process: torchrun learns why a rank failed, and the group is left.

Imported by every ``python -m kiln``, so it imports torch only inside a torchrun rank: at the top,
it cost ``python -m kiln --help`` (or ``models``, ``registry``) 2.5 s of torch import for nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Iterator

from kiln.distributed.env import launch_env


@contextlib.contextmanager
def worker_process() -> Iterator[None]:
    """Around a CLI verb run by torchrun: an exception is written to torchrun's error file (so the
    launcher's report names the rank and its error, not just an exit code), and the process group
    is destroyed on the way out. Outside torchrun it does nothing."""
    if not launch_env().launched:
        yield
        return
    from kiln.distributed.group import shutdown

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


def exit_rank(code: int) -> None:
    """End a torchrun rank other than 0 once its verb has returned ``code``: the interpreter's
    exit handlers run and the streams are flushed, as on a normal exit, then ``os._exit`` skips
    the rest of the teardown. That teardown (C++ destructors of the distributed library's threads)
    was seen to abort such a rank after it had left the process group ("terminate called without
    an active exception", SIGABRT, in 2 of 5 CI runs of a 2-rank gloo job), failing a finished
    job. Rank 0, which writes the run's files, and plain processes exit normally.
    """
    env = launch_env()
    if not env.launched or env.rank == 0:
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)

