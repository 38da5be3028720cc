"""The app factory in-process: separate registries per app, a model failure is a logged 500 with a
request id, a missing extra is named. (Everything else is tested against the real server.)"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pytest
import uvicorn

from kiln.errors import MissingExtraError
from kiln.serve import create_app, load_served_model, prepare_model
from kiln.serve.backends import Array, Predictor
from tests.serve.conftest import bound_socket


@contextlib.contextmanager
def serving(app: Any, lifespan: Literal["on", "off"] = "on") -> Iterator[httpx.Client]:
    """``app`` on a real uvicorn server in a thread (signals stay with the main thread)."""
    sock = bound_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class ExplodingBackend:
    """The real torch backend, except that it raises on inputs far off the data (as a user's model
    with an internal check would)."""

    name = "torch"

    def __init__(self, inner: Predictor) -> None:
        self.inner = inner

    def predict(self, batch: Array) -> Array:
        if np.abs(batch).max() > 1000:
            raise RuntimeError("activation overflow")
        return self.inner.predict(batch)


def test_model_failure_is_a_500_with_a_logged_request_id(
        trained_run: Path, caplog: pytest.LogCaptureFixture) -> None:
    served = load_served_model(prepare_model(trained_run, "torch"))
    app = create_app(dataclasses.replace(served, backend=ExplodingBackend(served.backend)))
    with serving(app) as client, caplog.at_level(logging.ERROR, logger="kiln.serve"):
        assert client.post("/predict", json={"instances": [[0.5] * 64]}).status_code == 200
        response = client.post("/predict", json={"instances": [[5000.0] * 64]})
        assert response.status_code == 500
        request_id = response.json()["request_id"]
        assert response.headers["x-request-id"] == request_id
        assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)
        assert client.post("/predict", json={"instances": [[0.5] * 64]}).status_code == 200


def test_two_apps_have_their_own_metrics(trained_run: Path) -> None:
    served = load_served_model(prepare_model(trained_run, "torch"))
    first, second = create_app(served), create_app(served)
    assert first.state.metrics.registry is not second.state.metrics.registry
    with serving(first) as client:
        client.post("/predict", json={"instances": [[0.5] * 64]})
        text = client.get("/metrics").text
    with serving(second) as client:
        other = client.get("/metrics").text
    assert 'kiln_requests_total{endpoint="/predict",status="200"} 1.0' in text
    assert 'endpoint="/predict"' not in other


def test_ready_only_after_warm_up(trained_run: Path) -> None:
    with serving(create_app(trained_run, backend="torch"), lifespan="off") as client:
        assert client.get("/ready").status_code == 503  # the startup (warm-up) never ran
        assert client.get("/health").status_code == 200
    with serving(create_app(trained_run, backend="torch")) as client:
        assert client.get("/ready").status_code == 200


def test_missing_extra_names_it() -> None:
    from kiln.serve.app import require

    with pytest.raises(MissingExtraError, match=r"pip install 'kiln-ml\[serve\]'"):
        require("no_such_module_for_kiln_serve")
