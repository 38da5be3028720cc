"""A tiny trained run (digits, one-layer MLP) and real ``kiln serve`` processes on free ports.

Each server is a subprocess (``python -m kiln serve ... --port 0``) talked to over HTTP on
loopback, at the port the kernel gave it, which it prints; a module shares one server per
configuration, so the suite starts only a handful.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kiln.testing import tiny_config
from kiln.train import Trainer

STARTUP_SECONDS = 120  # generous: the first ONNX server also exports the model (2 busy cores)


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    log: Path

    def stop(self, timeout: float = 30, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def bound_socket() -> socket.socket:
    """A socket bound to a port the kernel picked, for a server to listen on: no window for
    another process to take the port, as there is between finding a free one and binding it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


LISTENING = re.compile(r"^serving .* on http://127\.0\.0\.1:(\d+) ", re.MULTILINE)


def start_server(source: str | Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """Start ``kiln serve --port 0``, read the port it bound from its first line, and wait until
    ``/ready`` answers 200."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    handle = log.open("w", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln", "serve", str(source), "--port", "0", *args],
        stdout=handle, stderr=subprocess.STDOUT, text=True, env=env,
    )
    handle.close()
    server = Server(process, "", log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kiln serve exited with {process.returncode}:\n{server.output()}")
        if not server.url and (found := LISTENING.search(server.output())):
            server.url = f"http://127.0.0.1:{found[1]}"
        if server.url:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                    return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"kiln serve did not become ready in {STARTUP_SECONDS}s:\n{server.output()}")


@contextlib.contextmanager
def running(source: str | Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    server = start_server(source, log, *args, env=env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("serve-runs")
    result = Trainer(tiny_config(output, "checkpoint.enabled=false", backends=("jsonl",)), quiet=True).fit()
    return result.run_dir


@pytest.fixture(scope="session")
def served_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the run without any export: the first ONNX server creates it."""
    copy = tmp_path_factory.mktemp("served") / trained_run.name
    shutil.copytree(trained_run, copy)
    return copy


@pytest.fixture(scope="session")
def onnx_server(served_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("logs") / "onnx.log"
    with running(served_run, log, "--max-batch", "16", "--max-body-mb", "0.05") as server:
        yield server


@pytest.fixture(scope="session")
def torch_server(served_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("logs") / "torch.log"
    with running(served_run, log, "--backend", "torch", "--batch-wait-ms", "2") as server:
        yield server
