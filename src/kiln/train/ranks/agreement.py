"""Ranks agree on stopping, so a signal never leaves one rank waiting for another forever.

torchrun passes SIGTERM/SIGINT to every worker, but each receives it at a different step. Each
rank only notes its signal; at the end of every batch one tiny all-reduce (MAX of the pending
signal number) tells all ranks, and all stop after the same step and write the same checkpoint.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from typing_extensions import override

from kiln.distributed.group import all_reduce_max
from kiln.train.callback import Callback
from kiln.train.signals import EXIT_CODES, GracefulSignals
from kiln.train.state import TrainState


class SignalAgreement(Callback):
    """Defers kiln's graceful-stop handlers (when installed) to a per-batch agreement."""

    def __init__(self) -> None:
        self.pending = 0
        self._graceful: Any = None

    @override
    def on_fit_start(self, state: TrainState) -> None:
        for signum in EXIT_CODES:
            handler = signal.getsignal(signum)
            if isinstance(getattr(handler, "__self__", None), GracefulSignals):
                self._graceful = handler
                signal.signal(signum, self._note)  # GracefulSignals puts the old ones back at exit

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.pending:  # a second signal: stop now, as GracefulSignals does
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(EXIT_CODES.get(signal.Signals(signum), 143))
        self.pending = signum

    @override
    def on_batch_end(self, state: TrainState) -> None:
        agreed = all_reduce_max(self.pending)
        if agreed and state.stop_signal is None and self._graceful is not None:
            self.pending = agreed
            self._graceful(agreed, None)  # state.interrupt(agreed): stop after this step, checkpoint
