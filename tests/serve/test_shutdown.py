"""SIGTERM with requests in flight: they all complete, new connections are refused, exit code 0."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import running
from tests.serve.helpers import digits_inputs


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight_and_exits_0(served_run: Path, tmp_path: Path) -> None:
    # A 1.5 s batching wait keeps the requests inside the server when the signal arrives.
    with running(served_run, tmp_path / "server.log", "--backend", "torch", "--batch-wait-ms", "1500",
                 "--grace-seconds", "20") as server:
        rows = digits_inputs(1).tolist()
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(httpx.post, f"{server.url}/predict", json={"instances": rows}, timeout=30)
                       for _ in range(5)]
            time.sleep(0.7)
            assert not any(f.done() for f in futures), "the requests finished before the signal"
            sent = time.monotonic()
            server.process.send_signal(15)
            responses = [f.result() for f in futures]
        assert [r.status_code for r in responses] == [200] * 5
        assert time.monotonic() - sent < 5
        code = server.process.wait(30)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health", timeout=2)
    assert code == 0, server.output()
    assert "received SIGTERM" in server.output()
