"""Run the app with uvicorn, and stop it gracefully on SIGTERM.

On SIGTERM (or SIGINT) the server stops accepting connections, lets requests in flight finish
within ``grace_seconds``, runs the app's shutdown and returns; ``kiln serve`` then exits 0 for
SIGTERM, as orchestrators expect of a clean stop. (uvicorn re-raises the captured signal after
shutting down, which would end the process with 143; ``_Server`` keeps it captured instead.)

With ``workers > 1`` uvicorn's supervisor starts that many processes sharing the socket; each one
loads the model that ``prepare_model`` resolved once in the parent. Their metrics meet in
prometheus_client's multiprocess directory, so ``/metrics`` shows the sum over all workers
whichever one answers the scrape (``kiln.serve.workers``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kiln.serve.model import ModelSource, ServedModel

if TYPE_CHECKING:
    from kiln.monitor.options import MonitorOptions

log = logging.getLogger("kiln.serve")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_batch: int = 256
    max_body_mb: float = 8.0
    batch_wait_ms: float = 0.0
    grace_seconds: float = 30.0
    threads: int = 1
    log_level: str = "warning"
    monitor: MonitorOptions | None = None  # the prediction log and feedback (None: off)


def build_app(source: ModelSource | ServedModel, options: ServeOptions) -> Any:
    """The app factory uvicorn calls (in each worker): module level, so it can be pickled."""
    from kiln.serve.app import create_app

    return create_app(source, max_batch=options.max_batch, max_body_mb=options.max_body_mb,
                      batch_wait_ms=options.batch_wait_ms, threads=options.threads,
                      multiprocess_metrics=options.workers > 1, monitor=options.monitor)


def serve(source: ModelSource, options: ServeOptions) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 after SIGTERM, 130 after SIGINT)."""
    import uvicorn

    from kiln.serve.model import load_served_model, warm_up

    # Load and warm the model here first: a broken one stops with one clear error. (A worker that
    # fails while loading is restarted by uvicorn's supervisor again and again.)
    served = load_served_model(source, options.threads)
    warm_up(served)
    # One process serves the model just loaded; workers each load their own from the source.
    model: ModelSource | ServedModel = served if options.workers == 1 else source
    del served
    config = uvicorn.Config(
        functools.partial(build_app, model, options), factory=True, host=options.host,
        port=options.port, workers=options.workers, log_level=options.log_level,
        timeout_graceful_shutdown=math.ceil(options.grace_seconds), access_log=False,
    )
    # Bound before the line below, so that it names the port in use: with --port 0 the kernel
    # picks a free one, and a script reads it there instead of guessing one another may take.
    with _bound_socket(config, options) as sock:
        unverified = "" if source.parity is None or source.parity.verified else ", UNVERIFIED export"
        print(f"serving {source.name} (version {source.version}, {source.backend}{unverified}) on "
              f"http://{options.host}:{sock.getsockname()[1]}  docs: /docs  metrics: /metrics",
              flush=True)
        if options.workers > 1:
            from kiln.serve.workers import run_workers

            return run_workers(config, sock)
        server = _server_class()(config)
        server.run(sockets=[sock])
    if server.started is False and not server.received:
        return 1  # startup failed (the port is taken, the app raised); uvicorn logged why
    return 130 if signal.SIGINT in server.received else 0


@contextlib.contextmanager
def _bound_socket(config: Any, options: ServeOptions) -> Iterator[Any]:
    """uvicorn's bound socket; a port that is taken or not allowed is a ServeError (exit 1)
    instead of uvicorn's ``sys.exit(3)``, which it raises after logging the OS error."""
    from kiln.errors import ServeError

    try:
        sock = config.bind_socket()
    except SystemExit as exc:
        raise ServeError(
            f"cannot listen on {options.host}:{options.port} (the OS error is logged above); "
            "the port is taken or not allowed: choose another with --port, or --port 0 for a "
            "free one (the line 'serving ... on' names it)"
        ) from exc
    with sock:
        yield sock


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising the stop signal after a graceful shutdown."""

        received: list[int]

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.received = []

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self._on_signal) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

        def _on_signal(self, sig: int, frame: Any) -> None:
            self.received.append(sig)
            log.warning("received %s: finishing requests in flight, then stopping",
                        signal.Signals(sig).name)
            self.handle_exit(sig, frame)

    return Server
