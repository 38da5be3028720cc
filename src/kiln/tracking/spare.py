"""A tracker's worker process started before the run needs it, so that its imports overlap the
run's own start-up instead of its training.

MLflow's import and the opening of its store cost about 2 s of CPU. Paid by the worker while the
run trains (on 2 cores, beside torch's two threads), they made the epochs around that moment
several times slower; paid while the run's process imports torch and builds its data (one busy
core), they cost nothing. ``kiln train`` therefore starts a *spare* worker as soon as its config
is read (``start``); the tracker's constructor later *adopts* it (``RemoteTracker(spare=...)``)
and hands it what only exists by then: the run's finisher lock and its log file, as file
descriptors sent over a Unix socket (``SCM_RIGHTS``), so the lock is never free between the two
processes. A spare nobody adopts (the run failed before training, or its settings changed) sees
its socket close and exits once its preload is done.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

# The worker's side: the socket's file descriptor number is passed as ``--fd-socket N``.
MAX_FDS = 8


@dataclass
class SpareWorker:
    """A started ``kiln.tracking.worker`` waiting to be adopted; ``key`` says what it was started
    for (a tracker adopts only a spare started with its own settings).

    Adoption (on the tracker's thread) and ``discard`` (the training thread, or exit) are
    exclusive: a spare is either handed its descriptors or let go, never both."""

    process: subprocess.Popen[bytes]
    channel: socket.socket
    key: Hashable
    adopted: bool = False
    discarded: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def hand_over(self, env_fds: Mapping[str, int], stderr: int | None) -> None:
        """Send the worker the file descriptors it gets at adoption: ``env_fds`` are named to it
        by environment variable (the finisher lock), ``stderr`` becomes its standard error.
        OSError when the spare was let go or is gone: start a worker instead."""
        order = list(dict.fromkeys([*env_fds.values(), *([stderr] if stderr is not None else [])]))
        message = {
            "env_fds": {name: order.index(fd) for name, fd in env_fds.items()},
            "stderr": order.index(stderr) if stderr is not None else None,
        }
        with self._lock:
            if self.discarded:
                raise OSError("the spare worker was let go")
            socket.send_fds(self.channel, [json.dumps(message).encode()], order)
            self.adopted = True
            self.channel.close()

    def discard(self) -> None:
        """Let a spare go that will not be adopted: close its socket, so it exits once its preload
        returns. Not killed: a signal cannot interrupt a preload blocked in C, and could cut short
        MLflow's first creation of a store's tables; it is detached and silent meanwhile."""
        with self._lock:
            if self.adopted or self.discarded:
                return
            self.discarded = True
            for closable in (self.channel, self.process.stdin, self.process.stdout):
                with contextlib.suppress(OSError, AttributeError):
                    closable.close()  # type: ignore[union-attr]


def start(command: Sequence[str], key: Hashable, env: Mapping[str, str]) -> SpareWorker:
    """Start ``command`` (a worker command line without ``--fd-socket``) as a spare. Its output
    goes nowhere until adoption: a run that never adopts it must not hear from it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = subprocess.Popen(
            [*command, "--fd-socket", str(theirs.fileno())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, **env}, start_new_session=True, pass_fds=(theirs.fileno(),),
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    spare = SpareWorker(process, ours, key)
    atexit.register(spare.discard)  # a no-op once adopted
    return spare


def receive(fd_socket: int) -> tuple[list[int], dict[str, object]] | None:
    """The worker's side of ``hand_over``: the file descriptors and their message, or None when
    the run's process closed the socket without adopting this worker (it is not needed)."""
    with socket.socket(fileno=fd_socket) as channel:
        try:
            data, fds, _, _ = socket.recv_fds(channel, 4096, MAX_FDS)
        except OSError:
            return None
    if not data:
        return None
    message = json.loads(data.decode())
    return list(fds), message if isinstance(message, dict) else {}
