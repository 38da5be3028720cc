"""Real servers for the tracking tests: an ``mlflow server`` on a free loopback port, shared by
the tests of one session, and a server that never answers until it is told to."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_workers() -> set[int]:
    """Pids of this process's tracker worker processes that are still running (not zombies)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "kiln.tracking.worker" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


class MlflowServer:
    """``mlflow server`` with a SQLite backend store; can be stopped and started again (same data)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        with (self.root / "server.log").open("ab") as log:
            self.process = self._spawn(mlflow, log)
        self._wait(timeout)

    def _spawn(self, mlflow: Path, log: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
             "--artifacts-destination", (self.root / "artifacts").as_uri(),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=log,  # type: ignore[arg-type]
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        )

    def _wait(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not answer /health in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


class StalledServer:
    """A real HTTP server on a loopback socket that accepts every connection and reads every
    request, then holds its answer until ``release()`` (a tracking server hung behind a load
    balancer, or one with a full disk). Bound to port 0, so no other process can take the port.

    ``requests`` lists what arrived (method and path), ``reached`` is set at the first one, and
    ``answered`` counts the answers given (all after ``release``, a 503).
    """

    def __init__(self, safety: float = 300.0) -> None:
        self.requests: list[str] = []
        self.answered = 0
        self.reached = threading.Event()
        self.released = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _hold(self) -> None:
                owner.requests.append(f"{self.command} {self.path}")
                owner.reached.set()
                if not owner.released.wait(safety):  # the safety only ends a forgotten server
                    owner.release()
                with contextlib.suppress(OSError):  # the client may have given up long ago
                    self.send_error(503, "stalled")
                    owner.answered += 1

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _hold

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="stalled-server", daemon=True)

    def __enter__(self) -> StalledServer:
        self._thread.start()
        return self

    def release(self) -> None:
        self.released.set()

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture()
def stalled_server() -> Iterator[StalledServer]:
    with StalledServer() as server:
        yield server


class DroppingProxy:
    """A real TCP proxy on a loopback socket in front of ``port``: the first ``drop`` connections
    are closed as soon as their request has arrived, with no answer (a server that reset an idle
    keep-alive connection as the client reused it, or a load balancer restarting); every later
    one is relayed to ``port`` both ways. ``dropped`` counts the connections dropped."""

    def __init__(self, port: int, drop: int = 1) -> None:
        self.port, self.drop, self.dropped = port, drop, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, name="dropping-proxy", daemon=True)

    def __enter__(self) -> DroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed by __exit__
            if self.dropped < self.drop:
                self.dropped += 1
                client.recv(65536)  # the request arrived; no answer comes
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_relay, args=(source, sink), daemon=True).start()


class OutageProxy:
    """A real TCP proxy on a loopback port in front of ``port`` that can be cut and restored: a
    tracking server going away mid-run and coming back, on the same address, without paying for
    a second ``mlflow server`` start-up. ``cut()`` closes the listening socket and every relayed
    connection (a client then meets a refused connection, as with a stopped server);
    ``restore()`` listens on the same port again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.own_port = self.listener.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.own_port}"
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self._accept, args=(self.listener,), name="outage-proxy", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            upstream = socket.create_connection(("127.0.0.1", self.port))
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_relay, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        # shutdown() first: close() alone leaves the accept() blocked in the thread listening
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.own_port))  # SO_REUSEADDR on POSIX
        self._serve()


def _relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
