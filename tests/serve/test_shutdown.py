"""SIGTERM with requests in flight, with one process or several (README, Serve): the server stops
listening, lets the requests finish, answers them in full and exits 0; a request still unfinished
when ``--grace-seconds`` run out is cut, and the process exits 0 all the same.

A request is held in flight by its own client, over a raw socket: the headers and all but the
last bytes of the body go out first, the rest only once the server is seen shutting down. What is
tested is the server's waiting, never a race between a sleep and a signal.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil
import pytest

from tests.serve.conftest import Server, running
from tests.serve.helpers import digits_inputs, expected_probabilities, metric_samples

HELD_BYTES = 5  # the tail of each body the client keeps back
WAIT_SECONDS = 60  # for a state to be reached; a guard against hanging, not a timing assertion


def wait_until(condition: Callable[[], bool], what: str, server: Server) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{server.output()}"
        time.sleep(0.05)


def hold_request(server: Server, body: bytes) -> socket.socket:
    """A POST /predict whose server has the headers and all of the body but its last bytes."""
    address = urlsplit(server.url)
    sock = socket.create_connection((address.hostname, address.port), timeout=WAIT_SECONDS)
    head = (f"POST /predict HTTP/1.1\r\nHost: {address.netloc}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[:-HELD_BYTES])
    return sock


def finish_request(sock: socket.socket, body: bytes) -> tuple[int, str]:
    sock.sendall(body[-HELD_BYTES:])
    return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, str]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read().decode()


def in_progress(server: Server) -> float:
    """``kiln_requests_in_progress`` less the scrape asking (summed over workers)."""
    samples = metric_samples(httpx.get(f"{server.url}/metrics", timeout=10).text)
    return samples[("kiln_requests_in_progress", ())] - 1


def listening(server: Server) -> list[int]:
    """The processes that accept connections on the server's port: the server itself, or its
    workers (the supervisor of ``--workers N`` keeps the socket open but never accepts)."""
    port = urlsplit(server.url).port
    root = psutil.Process(server.process.pid)
    found = []
    for process in [root, *root.children(recursive=True)]:
        try:
            sockets = process.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in sockets):
            found.append(process.pid)
    return found


def serving_processes(server: Server, workers: int) -> list[int]:
    """Which processes serve: every worker, once all of them have started."""
    if workers == 1:
        return [server.process.pid]
    wait_until(lambda: len(listening(server)) == workers + 1, f"{workers} workers", server)
    return [pid for pid in listening(server) if pid != server.process.pid]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_requests_in_flight_in_full_then_exits_0(
        served_run: Path, tmp_path: Path, workers: int) -> None:
    raw = digits_inputs(4, seed=7)
    bodies = [json.dumps({"instances": raw[i:i + 1].tolist()}).encode() for i in range(len(raw))]
    with running(served_run, tmp_path / "server.log", "--backend", "torch", "--workers", str(workers),
                 "--grace-seconds", "60") as server, contextlib.ExitStack() as sockets:
        serving = serving_processes(server, workers)
        held = [sockets.enter_context(hold_request(server, body)) for body in bodies]
        wait_until(lambda: in_progress(server) == len(held), "every request in flight", server)

        server.process.send_signal(signal.SIGTERM)
        # Every serving process has closed its listening socket: it is shutting down, with the
        # requests still open (their bodies are incomplete).
        wait_until(lambda: not set(serving) & set(listening(server)), "the server to stop listening",
                   server)
        answers = [finish_request(sock, body) for sock, body in zip(held, bodies, strict=True)]
        code = server.process.wait(WAIT_SECONDS)
    assert code == 0, server.output()
    assert [status for status, _ in answers] == [200] * len(held), answers
    probabilities = [json.loads(text)["probabilities"][0] for _, text in answers]
    np.testing.assert_allclose(probabilities, expected_probabilities(served_run, raw), rtol=0, atol=1e-6)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=2)
    if workers == 1:
        assert "received SIGTERM: finishing requests in flight, then stopping" in server.output()


@pytest.mark.slow
def test_a_request_longer_than_the_grace_is_cut_with_a_500_and_the_server_exits_0(
        served_run: Path, tmp_path: Path) -> None:
    # One process: workers take the same grace from the same uvicorn config.
    body = json.dumps({"instances": digits_inputs(1).tolist()}).encode()
    grace = 1.0
    with running(served_run, tmp_path / "server.log", "--backend", "torch",
                 "--grace-seconds", str(grace)) as server, hold_request(server, body) as sock:
        # The client never sends the rest: without the grace the server would wait for it forever.
        wait_until(lambda: in_progress(server) == 1, "the request in flight", server)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        status, text = read_response(sock)
        code = server.process.wait(WAIT_SECONDS)
        waited = time.monotonic() - signalled
    assert (status, text) == (500, "Internal Server Error")  # uvicorn's answer to a cancelled request
    assert code == 0, server.output()
    assert waited >= grace  # not cut before the grace ran out
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in server.output()
