"""``kiln serve --workers N``: uvicorn's supervisor over N processes whose metrics add up.

Each worker is a fresh interpreter with its own Prometheus registry. In prometheus_client's
multiprocess mode every worker also writes its values to files in one directory, and whichever
worker answers ``/metrics`` renders the sum of all the files. The directory is
$PROMETHEUS_MULTIPROC_DIR when the operator set it (used and kept as it is), else a private
temporary one, created before the first worker starts and removed once the last has stopped.

The variable is set in this process's environment only while the supervisor runs: spawned
workers receive it only through the environment, and prometheus_client reads it when first
imported. When a worker exits, its live gauges (requests in progress) leave the sum
(``mark_process_dead``), so a worker killed mid-request does not count that request forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kiln.errors import ServeError
from kiln.settings import PROMETHEUS_MULTIPROC_DIR

log = logging.getLogger("kiln.serve")


def run_workers(config: Any, sock: socket.socket) -> int:
    """Run ``config.workers`` processes of ``config``'s app on ``sock`` (bound, from
    ``config.bind_socket()``) until SIGTERM/SIGINT; the exit code is that of one server: 130 after
    SIGINT (Ctrl-C), 0 after SIGTERM, 1 when a worker failed to start (uvicorn's supervisor then
    stops them all)."""
    from uvicorn.config import STARTUP_FAILURE

    with metrics_directory() as directory:
        supervisor = _supervisor_class()(config, [sock], directory)
        supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        return 1
    return 130 if supervisor.interrupted else 0


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    """The directory the workers share metrics through, in $PROMETHEUS_MULTIPROC_DIR meanwhile."""
    chosen = os.environ.get(PROMETHEUS_MULTIPROC_DIR)
    if chosen is not None:
        # prometheus_client treats any value, even "", as multiprocess mode.
        if not chosen or not Path(chosen).is_dir():
            raise ServeError(f"{PROMETHEUS_MULTIPROC_DIR}={chosen!r} is not a directory: create it "
                             "(empty), or unset it to let kiln serve use a temporary one")
        stale = len(list(Path(chosen).glob("*.db")))
        if stale:
            log.warning("%s=%s already holds %d metrics files, whose counts add to this server's; "
                        "empty it before each start", PROMETHEUS_MULTIPROC_DIR, chosen, stale)
        yield Path(chosen)
        return
    with tempfile.TemporaryDirectory(prefix="kiln-metrics-") as name:
        os.environ[PROMETHEUS_MULTIPROC_DIR] = name
        try:
            yield Path(name)
        finally:
            os.environ.pop(PROMETHEUS_MULTIPROC_DIR, None)


def _supervisor_class() -> type:
    from prometheus_client import multiprocess
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        """uvicorn's supervisor, plus taking each exited worker's live gauges out of the sum."""

        def __init__(self, config: Any, sockets: list[Any], directory: Path) -> None:
            super().__init__(config, sockets=sockets)
            self.directory = directory
            self.alive: set[int] = set()
            self.interrupted = False

        def handle_int(self) -> None:
            self.interrupted = True
            super().handle_int()

        def keep_subprocess_alive(self) -> None:
            # Called every half second; it has just replaced any worker that died.
            super().keep_subprocess_alive()
            self._forget_exited()

        def join_all(self) -> None:
            super().join_all()
            self._forget_exited()

        def _forget_exited(self) -> None:
            # Workers leave self.processes when replaced (crash, SIGHUP) or retired (SIGTTOU).
            current = {p.pid for p in self.processes if p.pid is not None}
            alive = {p.pid for p in self.processes if p.pid is not None and p.process.is_alive()}
            for pid in (self.alive | current) - alive:
                multiprocess.mark_process_dead(pid, str(self.directory))  # type: ignore[no-untyped-call]
            self.alive = alive

    return Supervisor
