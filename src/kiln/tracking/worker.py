"""The child process that runs a tracker for ``RemoteTracker`` (``python -m kiln.tracking.worker``).

Reads pickled ``(method, args)`` calls from its parent on stdin and reports on stdout, one JSON
object per line: ``{"ready": true}``, then ``{"error": "..."}`` if a call fails (the worker exits).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pickle
import sys
import threading
from typing import Any, BinaryIO, TextIO


def _emit(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


# Calls that need nothing the warm-up imports, so they go ahead while it runs.
_LIGHT_CALLS = frozenset({"log_metrics", "log_metric_records", "log_params", "log_event"})


class _Unpickler(pickle.Unpickler):
    """Waits for the warm-up thread before unpickling anything that imports a module (a model):
    torch's modules cannot be imported from two threads at once."""

    def __init__(self, file: BinaryIO, warm: threading.Thread) -> None:
        super().__init__(file)
        self.warm = warm

    def find_class(self, module: str, name: str) -> Any:
        if self.warm.is_alive():
            self.warm.join()
        return super().find_class(module, name)


def serve(stdin: BinaryIO, stdout: TextIO) -> tuple[int, bool]:
    """Answer calls until ``close`` or the end of stdin: (exit code, whether the tracker stored
    everything by the time its close() returned, its ``durable_on_close``)."""
    from kiln.catalog import import_object

    factory_path, args = pickle.load(stdin)  # the channel is our own parent's pipe
    try:
        tracker = import_object(factory_path, "tracker")(*args)
    except Exception as exc:
        _emit(stdout, {"error": f"{type(exc).__name__}: {exc}"})
        return 1, False
    durable = bool(getattr(tracker, "durable_on_close", False))
    _emit(stdout, {"ready": True})
    warm = threading.Thread(target=_warm_up, args=(tracker,), name="kiln-warm-up", daemon=True)
    if hasattr(tracker, "warm_up"):
        warm.start()
    while True:
        try:
            method, call_args = _Unpickler(stdin, warm).load()  # one per message: memos are per dump
        except EOFError:
            return 0, False
        if method not in _LIGHT_CALLS and warm.is_alive():
            warm.join()  # the warm-up imports what the heavier calls need: let it finish first
        try:
            getattr(tracker, method)(*call_args)
        except Exception as exc:
            _emit(stdout, {"error": f"{method}: {type(exc).__name__}: {exc}"})
            return 1, False
        if method == "close":
            _emit(stdout, {"closed": True})
            return 0, durable


def _warm_up(tracker: Any) -> None:
    """Run the tracker's optional ``warm_up`` on idle CPU only: SCHED_IDLE (this thread, Linux)
    gives way to any other work on the machine. A failure here is not reported: the call that
    needs what it prepares fails the same way, and reports it."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    with contextlib.suppress(Exception):
        tracker.warm_up()


def main() -> int:
    # The protocol gets the original stdout; anything else printed (MLflow prints run links and
    # progress bars, C extensions may write to fd 1) goes to stderr instead of corrupting it.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if hasattr(os, "nice"):
        os.nice(10)  # tracking yields the CPU to training whenever both want it
    code, durable = serve(sys.stdin.buffer, protocol)
    if code == 0 and durable:
        # The tracker has stored everything. Run the exit handlers (MLflow's temporary
        # directories), then skip the rest of the interpreter's teardown: freeing torch's, dynamo's
        # and MLflow's modules took 1.7 s, and the end of the run waited for it.
        atexit._run_exitfuncs()
        sys.stderr.flush()
        os._exit(0)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
