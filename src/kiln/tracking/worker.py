"""The child process that runs a tracker for ``RemoteTracker`` (``python -m kiln.tracking.worker``).

Reads pickled ``(method, args)`` calls from its parent on stdin and reports on stdout, one JSON
object per line: ``{"ready": true}``, then ``{"error": "..."}`` if a call fails (the worker exits).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from typing import Any, BinaryIO, TextIO


def _emit(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def serve(stdin: BinaryIO, stdout: TextIO) -> int:
    from kiln.catalog import import_object

    factory_path, args = pickle.load(stdin)  # the channel is our own parent's pipe
    try:
        tracker = import_object(factory_path, "tracker")(*args)
    except Exception as exc:
        _emit(stdout, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _emit(stdout, {"ready": True})
    while True:
        try:
            method, call_args = pickle.load(stdin)
        except EOFError:
            return 0
        try:
            getattr(tracker, method)(*call_args)
        except Exception as exc:
            _emit(stdout, {"error": f"{method}: {type(exc).__name__}: {exc}"})
            return 1
        if method == "close":
            _emit(stdout, {"closed": True})
            return 0


def main() -> int:
    # The protocol gets the original stdout; anything else printed (MLflow prints run links and
    # progress bars, C extensions may write to fd 1) goes to stderr instead of corrupting it.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if hasattr(os, "nice"):
        os.nice(10)  # tracking yields the CPU to training whenever both want it
    return serve(sys.stdin.buffer, protocol)


if __name__ == "__main__":
    raise SystemExit(main())
