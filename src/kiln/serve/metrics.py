"""Prometheus metrics of one app, in a registry of its own (two apps in a process never collide).

Names follow Prometheus conventions: ``_total`` counters, ``_seconds`` durations, base units.
``endpoint`` takes only the API's own paths (anything else is ``other``), so a scanner probing
random URLs cannot blow up the label cardinality.

Under ``kiln serve --workers N`` each worker writes its values to files in prometheus_client's
multiprocess directory ($PROMETHEUS_MULTIPROC_DIR) and ``/metrics`` renders the sum over all of
them (``multiprocess=True``); the gauges' ``multiprocess_mode`` says how workers combine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENDPOINTS = ("/predict", "/feedback", "/health", "/ready", "/metadata", "/metrics", "/docs", "/openapi.json")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServeMetrics:
    """The seven metrics the server exports; ``exposed`` is the registry ``/metrics`` renders: this
    app's own, or with ``multiprocess`` the aggregate of every process sharing the directory."""

    def __init__(self, max_batch: int, multiprocess: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("kiln_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.duration = Histogram("kiln_request_duration_seconds", "Time from request to full response",
                                  ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Counter("kiln_predictions", "Instances predicted, by predicted class",
                                   ["class"], registry=r)
        self.batch_size = Histogram("kiln_batch_size", "Instances per model call (after micro-batching)",
                                    buckets=_powers_of_two(max_batch), registry=r)
        # livesum: the requests of the live workers add up (a dead worker's share is dropped);
        # max: every worker sets the same 1, so the model stays one series, without a pid label.
        self.in_progress = Gauge("kiln_requests_in_progress", "Requests being handled now",
                                 registry=r, multiprocess_mode="livesum")
        # parity: the export's verdict (passed, reference for the eager model; failed, missing or
        # modified only under --allow-unverified), so an alert can fire on an unverified model.
        self.model_info = Gauge("kiln_model_info", "The served model (value is always 1)",
                                ["name", "version", "backend", "run", "parity"], registry=r,
                                multiprocess_mode="max")
        # the log's writer never makes a request wait: a batch it cannot take is counted here
        self.log_dropped = Counter("kiln_prediction_log_dropped", "Predictions not written to the "
                                   "prediction log (queue full or write failed)", registry=r)
        self.exposed = _multiprocess_registry() if multiprocess else self.registry

    def count_predictions(self, classes: Sequence[str]) -> None:
        counts: dict[str, int] = {}
        for name in classes:
            counts[name] = counts.get(name, 0) + 1
        for name, count in counts.items():
            self.predictions.labels(name).inc(count)


class MetricsMiddleware:
    """Counts and times every HTTP request, including those refused by inner middleware."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = 500  # what the client gets if the app raises before answering
        start = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.in_progress.dec()
            self.metrics.duration.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, str(status)).inc()


def _multiprocess_registry() -> CollectorRegistry:
    """A registry summing the files of every process writing to $PROMETHEUS_MULTIPROC_DIR."""
    from prometheus_client import multiprocess, values

    from kiln.errors import ServeError
    from kiln.settings import PROMETHEUS_MULTIPROC_DIR

    directory = os.environ.get(PROMETHEUS_MULTIPROC_DIR, "")
    if not os.path.isdir(directory):
        raise ServeError(f"multiprocess metrics need {PROMETHEUS_MULTIPROC_DIR} set to an existing "
                         f"directory, got {directory!r}; kiln serve --workers N sets it up itself")
    if values.ValueClass is values.MutexValue:
        # prometheus_client picks file-backed values when it is first imported.
        raise ServeError(f"{PROMETHEUS_MULTIPROC_DIR} was set after prometheus_client was imported "
                         "in this process, so its metrics stay in memory, out of the aggregate: "
                         "set it before the process starts")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def _powers_of_two(limit: int) -> tuple[float, ...]:
    buckets, size = [], 1
    while size < limit:
        buckets.append(float(size))
        size *= 2
    return (*buckets, float(limit))
