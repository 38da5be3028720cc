"""The child process that runs a tracker for ``RemoteTracker`` (``python -m kiln.tracking.worker``).

Reads pickled ``(method, args)`` calls from its parent on stdin and reports on stdout, one JSON
object per line: ``{"collecting": seconds}`` with ``--start-after``, ``{"ready": true}``, then ``{"error": "..."}`` if a call fails (the worker exits),
and ``{"closed": true}`` once ``close`` has returned.

A thread takes every call off the pipe as soon as it arrives, from the start, so the parent never
blocks on a full pipe while this process imports MLflow or waits for a slow server. That is also what lets the parent leave
without waiting at the end of a run: the worker, in its own session (no terminal signals reach it),
finishes the calls it holds on its own, within ``--deadline`` seconds of the ``close`` call. A
parent that has gone away makes its reports go nowhere, quietly: a tracking process never prints a
traceback.

With ``--start-after S`` the worker only collects calls for the first S seconds, or until the run
ends if that comes first: a short run then pays nothing for MLflow while it trains (on 2 cores,
importing MLflow beside torch made a 9 s run 5 s longer whatever the worker's CPU priority), and
its finisher does everything after the prompt at normal priority. A run still going after S
seconds gets a live worker at ``nice 10``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO, TextIO


class _Reports:
    """The protocol channel to the parent; once the parent is gone, reports are dropped."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.gone = False

    def emit(self, message: dict[str, Any]) -> None:
        if self.gone:
            return
        try:
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()
        except (OSError, ValueError):  # BrokenPipeError: the run's process has exited
            self.gone = True


class _Unpickler(pickle.Unpickler):
    """Reads the parent's calls; a pretrained backbone's classes are imported the way the run's
    process imported them (see ``kiln._vision``)."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in ("torchvision", "timm"):
            from kiln._vision import torchvision

            torchvision()
        return super().find_class(module, name)


class _Spool:
    """Everything the parent writes, taken off the pipe by a thread as soon as it arrives (from
    before the tracker is even built), and read back by the unpickler as from a file."""

    def __init__(self, stdin: BinaryIO) -> None:
        self._fd = stdin.fileno()
        self._buffer = bytearray()
        self._eof = False
        self._ready = threading.Condition()
        threading.Thread(target=self._fill, name="kiln-spool", daemon=True).start()

    def _fill(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError:
                chunk = b""
            with self._ready:
                if chunk:
                    self._buffer += chunk
                else:
                    self._eof = True
                self._ready.notify_all()
            if not chunk:
                return

    def _take(self, size: int) -> bytes:
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def read(self, size: int = -1) -> bytes:
        with self._ready:
            self._ready.wait_for(lambda: self._eof or (size >= 0 and len(self._buffer) >= size))
            return self._take(len(self._buffer) if size < 0 else size)

    def readline(self, size: int = -1) -> bytes:
        with self._ready:
            self._ready.wait_for(lambda: self._eof or b"\n" in self._buffer)
            end = self._buffer.find(b"\n")
            return self._take(len(self._buffer) if end < 0 else end + 1)

    def wait_for_end(self, timeout: float) -> bool:
        """Wait until the parent has closed the pipe (its close() call, or its death); False if
        ``timeout`` seconds passed first."""
        with self._ready:
            return self._ready.wait_for(lambda: self._eof, timeout)

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


def serve(
    stdin: BinaryIO, stdout: TextIO | _Reports, deadline: float | None = None, start_after: float = 0.0,
    preload: Callable[[], object] | None = None, fd_socket: int | None = None,
) -> tuple[int, bool]:
    """Answer calls until ``close`` or the end of stdin: (exit code, whether the tracker stored
    everything by the time its close() returned, its ``durable_on_close``). With ``start_after``,
    first collect calls for that many seconds or until the parent has closed the pipe.

    A spare worker (``kiln.tracking.spare``) runs ``preload`` first, then waits on ``fd_socket``
    to be adopted; a spare that is not adopted exits 0."""
    from kiln.catalog import import_object

    reports = stdout if isinstance(stdout, _Reports) else _Reports(stdout)
    spool = _Spool(stdin)
    failed = _run_preload(preload)
    if fd_socket is not None and not _adopted(fd_socket):
        return 0, False
    factory_path, args = pickle.load(spool)  # the channel is our own parent's pipe
    if failed is not None:  # the tracker would fail the same way, after as long a wait
        reports.emit({"error": failed})
        return 1, False
    if start_after > 0:
        reports.emit({"collecting": start_after})
        if not spool.wait_for_end(start_after):
            _yield_to_training()  # the run goes on: from here, this process must not slow it
    try:
        tracker = import_object(factory_path, "tracker")(*args)
    except Exception as exc:
        reports.emit({"error": f"{type(exc).__name__}: {_one_line(exc)}"})
        return 1, False
    durable = bool(getattr(tracker, "durable_on_close", False))
    reports.emit({"ready": True})
    while True:
        try:
            method, call_args = _Unpickler(spool).load()  # one per message: memos are per dump
        except EOFError:
            return 0, False  # the parent went away without close (killed): events.jsonl has it all
        if method == "close" and deadline is not None:
            _watchdog(deadline, tracker)
        try:
            getattr(tracker, method)(*call_args)
        except Exception as exc:
            error = f"{method}: {type(exc).__name__}: {_one_line(exc)}"
            reports.emit({"error": error})
            _give_up(tracker, error)
            return 1, False
        if method == "close":
            reports.emit({"closed": True})
            return 0, durable


def _run_preload(preload: Callable[[], object] | None) -> str | None:
    """Run a spare's preload; its error, if it failed (a store that cannot be opened: reported at
    adoption rather than met again, after the same timeouts, by the tracker). A missing package
    is left to the tracker, whose error names the extra to install."""
    if preload is None:
        return None
    try:
        preload()
    except ImportError:
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {_one_line(exc)}"
    return None


def _adopted(fd_socket: int) -> bool:
    """Wait for the run to adopt this spare; take the descriptors it hands over (the finisher
    lock, named by an environment variable; the log file as stdout and stderr)."""
    from kiln.tracking.spare import receive

    received = receive(fd_socket)
    if received is None:
        return False
    fds, message = received
    keep: set[int] = set()
    env_fds = message.get("env_fds")
    for name, index in (env_fds.items() if isinstance(env_fds, dict) else ()):
        os.environ[str(name)] = str(fds[index])
        keep.add(fds[index])
    stderr = message.get("stderr")
    if isinstance(stderr, int):
        os.dup2(fds[stderr], 2)
        os.dup2(fds[stderr], 1)  # stray prints went to stderr's target (see main)
    for fd in set(fds) - keep:
        os.close(fd)
    return True


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 500 else text[:497] + "..."


def _give_up(tracker: Any, error: str) -> None:
    """Let the tracker record why it stopped (the run dir's finisher outcome), if it can."""
    with contextlib.suppress(Exception):
        tracker.give_up(error)


def _watchdog(seconds: float, tracker: Any) -> None:
    """A finisher that has not finished within ``seconds`` of ``close`` stops: a hung server must
    not keep a process around for ever. events.jsonl has what it had not sent (``kiln sync``).

    Time spent waiting for a CPU does not count: on a machine busy with the next run, a finisher
    that could not run is not a hung server (a wall-clock limit stopped such finishers in CI and
    left their MLflow runs RUNNING)."""

    def watch() -> None:
        start, starved = time.monotonic(), _starved_seconds()
        while True:
            used = time.monotonic() - start - (_starved_seconds() - starved)
            if used >= seconds:
                break
            time.sleep(min(1.0, seconds - used))
        _give_up(tracker, f"did not finish within {seconds:.0f} s (tracking.close_timeout)")
        os._exit(3)

    threading.Thread(target=watch, name="kiln-watchdog", daemon=True).start()


def _starved_seconds() -> float:
    """Seconds this process's threads have spent runnable but waiting for a CPU, from Linux's
    per-thread schedstat (second field, nanoseconds); 0 where the kernel does not say."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.scandir("/proc/self/task"):
            with (contextlib.suppress(OSError, ValueError, IndexError),
                  open(os.path.join(task.path, "schedstat"), encoding="ascii") as handle):
                total += int(handle.read().split()[1])
    return total / 1e9


def _yield_to_training() -> None:
    """Lower the whole tracking process to ``nice 10`` while training runs beside it. Not
    SCHED_IDLE: an unprivileged process can never leave it, and its finisher, on a machine busy
    with the next run, then got no CPU at all (the watchdog stopped it, its MLflow run stayed
    RUNNING). ``nice 10`` still takes its turn."""
    with contextlib.suppress(AttributeError, OSError):
        os.nice(10)


def _preload(path: str | None, arg: str) -> Callable[[], object] | None:
    if path is None:
        return None

    def run() -> object:
        from kiln.catalog import import_object

        return import_object(path, "preload")(arg)

    return run


def _quiet_exit(signum: int, frame: Any) -> None:
    """SIGTERM (a take-over by ``kiln sync``, or a shutdown): leave at once, without a traceback."""
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiln.tracking.worker")
    parser.add_argument("--deadline", type=float, default=None, help="seconds to finish after close")
    parser.add_argument("--start-after", type=float, default=0.0, help="seconds to only collect calls")
    parser.add_argument("--preload", default=None, help="module:function to call first (a spare)")
    parser.add_argument("--preload-arg", default="", help="the argument of --preload")
    parser.add_argument("--fd-socket", type=int, default=None, help="a spare's adoption socket")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _quiet_exit)
    signal.signal(signal.SIGINT, _quiet_exit)  # the run's process decides what Ctrl-C means
    # The protocol gets the original stdout; anything else printed (MLflow prints run links and
    # progress bars, C extensions may write to fd 1) goes to stderr instead of corrupting it.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        code, durable = serve(sys.stdin.buffer, _Reports(protocol), options.deadline, options.start_after,
                              _preload(options.preload, options.preload_arg), options.fd_socket)
    except BaseException:  # nothing a tracking process hits may end in a traceback on a terminal
        os._exit(1)
    if code == 0 and durable:
        # The tracker has stored everything. Run the exit handlers (MLflow's temporary
        # directories), then skip the rest of the interpreter's teardown: freeing torch's, dynamo's
        # and MLflow's modules took 1.7 s, and the end of the run waited for it.
        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(0)
    # The remaining teardown may write to a closed pipe: a parent that left has nothing to hear.
    with contextlib.suppress(Exception):
        protocol.close()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
