"""Prometheus metrics of one app, in a registry of its own (two apps in a process never collide).

Names follow Prometheus conventions: ``_total`` counters, ``_seconds`` durations, base units.
``endpoint`` takes only the API's own paths (anything else is ``other``), so a scanner probing
random URLs cannot blow up the label cardinality.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENDPOINTS = ("/predict", "/health", "/ready", "/metadata", "/metrics", "/docs", "/openapi.json")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServeMetrics:
    """The six metrics the server exports."""

    def __init__(self, max_batch: int) -> None:
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
        self.in_progress = Gauge("kiln_requests_in_progress", "Requests being handled now", registry=r)
        self.model_info = Gauge("kiln_model_info", "The served model (value is always 1)",
                                ["name", "version", "backend"], registry=r)

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


def _powers_of_two(limit: int) -> tuple[float, ...]:
    buckets, size = [], 1
    while size < limit:
        buckets.append(float(size))
        size *= 2
    return (*buckets, float(limit))
