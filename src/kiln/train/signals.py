"""Graceful SIGINT/SIGTERM: finish the current step, checkpoint, exit 130/143. A second one is immediate."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from kiln.train.state import TrainState

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class GracefulSignals:
    """Installs the handlers for the duration of a fit and puts the previous ones back on exit
    (main thread only; elsewhere it does nothing). A first signal becomes ``state.interrupt``."""

    def __init__(self, state: TrainState) -> None:
        self.state = state
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # the second signal: stop now, without a checkpoint
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(EXIT_CODES.get(signal.Signals(signum), 143))
        self.received = signum
        self.state.interrupt(signum)
