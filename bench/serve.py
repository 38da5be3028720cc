"""Serving throughput and latency of ``kiln serve`` under load, over loopback HTTP.

Model: the enhanced CNN (``configs/mnist_cnn_enhanced.yaml``: conv 64 3x3, pool, dense 128, 10
classes) on 1x28x28 inputs. MNIST is not on this machine, so the package comes from a one-epoch
run of that architecture on kiln's synthetic 1x28x28 data; latency does not depend on the weights.

For each backend (ONNX Runtime, eager torch) and micro-batching off/on, a real ``kiln serve``
process is started; this process is the load generator. At each concurrency (1, 8, 32) it keeps
that many keep-alive connections busy, each sending one-instance ``POST /predict`` requests back
to back (a minimal asyncio HTTP/1.1 client, so the client's own cost stays small), bounded by
``--requests`` per level and ``--seconds`` per level. Latency is from writing the request to
reading the whole response. The model alone (ORT session, batch 1) is timed in-process for scale.

    .venv/bin/python bench/serve.py                      # all levels, prints markdown
    .venv/bin/python bench/serve.py --seconds 5 --requests 3000 --levels 1,8,32

``--monitoring-rounds N`` measures instead what monitoring costs a request (issue 23: the prediction
log, drift and feedback accounting, at most 50 us on the median at concurrency 1): the ONNX server
without micro-batching, started with ``--no-prediction-log`` (off) and with the defaults (on: the
log written, and drift and accuracy computed at every scrape), alternating, N rounds each; during
each round ``/metrics`` is scraped once a second, as Prometheus would, on both sides.

    .venv/bin/python bench/serve.py --monitoring-rounds 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from quiet import wait_quiet  # bench/quiet.py (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]


def build_run(output: Path) -> Path:
    """A model package of the enhanced CNN from a short run on synthetic 1x28x28 data."""
    from kiln.config import load_config
    from kiln.train import Trainer

    cfg = load_config(ROOT / "configs" / "mnist_cnn_enhanced.yaml", [
        "data.name=synthetic", "data.synthetic.n_samples=600", "training.epochs=1",
        f"run.output_dir={output}", "run.progress=false", "tracking.backends=[jsonl]",
        "checkpoint.enabled=false",
    ])
    return Trainer(cfg, quiet=True).fit().run_dir




def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(run: Path, backend: str, wait_ms: float, log: Path,
          extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    args = [sys.executable, "-m", "kiln", "serve", str(run), "--port", str(port), "--backend", backend,
            "--batch-wait-ms", str(wait_ms), *extra]
    process = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kiln serve exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("kiln serve did not become ready")


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """Read one HTTP/1.1 response (head and Content-Length body); its head."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    return head


async def connection(port: int, request: bytes, stop_at: float, budget: list[int],
                     latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            head = await read_response(reader)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n")[0].decode())
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()


async def scrape(port: int, stop_at: float, every: float) -> None:
    """GET /metrics every ``every`` seconds until ``stop_at``, as a Prometheus server would."""
    request = b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() + every < stop_at:
            await asyncio.sleep(every)
            writer.write(request)
            await read_response(reader)
    finally:
        writer.close()


async def drive(port: int, concurrency: int, requests: int, seconds: float, body: bytes,
                scrape_every: float | None = None) -> dict[str, float]:
    request = (b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    latencies: list[float] = []
    errors: list[str] = []
    budget = [requests]
    start = time.perf_counter()
    scraper = [scrape(port, start + seconds, scrape_every)] if scrape_every else []
    await asyncio.gather(*(connection(port, request, start + seconds, budget, latencies, errors)
                           for _ in range(concurrency)), *scraper)
    elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "rps": len(latencies) / elapsed,
            "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def model_alone(run: Path) -> float:
    """Median ms of one ONNX Runtime call at batch 1 (the server's session settings)."""
    from kiln.serve.backends import OnnxBackend

    backend = OnnxBackend(run / "models" / "model.onnx", "classification", threads=1)
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    for _ in range(50):
        backend.predict(x)
    times = []
    for _ in range(500):
        start = time.perf_counter()
        backend.predict(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def monitoring(rounds: int, requests: int, seconds: float, body: bytes, max_wait: float) -> None:
    """Median latency at concurrency 1, monitoring off against on, alternating rounds."""
    from stats import median_ci

    sides = {"off": ("--no-prediction-log",), "on": ()}
    p50: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        print("training the package (one epoch, synthetic 1x28x28)...", file=sys.stderr)
        run = build_run(Path(tmp))
        for round_ in range(rounds):
            for side in (("off", "on") if round_ % 2 == 0 else ("on", "off")):
                process, port = start(run, "onnx", 0.0, Path(tmp) / f"{side}.log", sides[side])
                try:
                    asyncio.run(drive(port, 1, 300, 2.0, body))  # warm-up, not reported
                    wait_quiet(max_wait)
                    result = asyncio.run(drive(port, 1, requests, seconds, body, scrape_every=1.0))
                    p50[side].append(result["p50"])
                    print(f"round {round_} {side}: {result}", file=sys.stderr)
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(60)
    differences = [(on - off) * 1000 for on, off in zip(p50["on"], p50["off"], strict=True)]
    low, high = median_ci(differences)
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs; onnx, no micro-batching, concurrency 1, {rounds} rounds.\n")
    print("| monitoring | median p50 ms (of rounds) | per round |")
    print("|---|---|---|")
    for side in ("off", "on"):
        print(f"| {side} | {statistics.median(p50[side]):.3f} | {', '.join(f'{v:.3f}' for v in p50[side])} |")
    print(f"\non - off, median of per-round differences: {statistics.median(differences):+.1f} us "
          f"(95 % CI {low:+.1f} to {high:+.1f} us); target at most +50 us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,8,32", help="concurrency levels")
    parser.add_argument("--requests", type=int, default=3000, help="most requests per level")
    parser.add_argument("--seconds", type=float, default=6.0, help="longest time per level")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, help="micro-batching wait when on")
    parser.add_argument("--max-wait", type=float, default=20.0,
                        help="before each level, wait up to this long for the machine to be quiet")
    parser.add_argument("--monitoring-rounds", type=int, default=0,
                        help="only measure monitoring off against on, this many rounds each")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    body = json.dumps({"instances": np.random.default_rng(0).random((1, 784)).round(4).tolist()}).encode()
    if args.monitoring_rounds:
        monitoring(args.monitoring_rounds, args.requests, args.seconds, body, args.max_wait)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        print("training the package (one epoch, synthetic 1x28x28)...", file=sys.stderr)
        run = build_run(Path(tmp))
        for backend in ("onnx", "torch"):
            for wait in (0.0, args.batch_wait_ms):
                process, port = start(run, backend, wait, Path(tmp) / f"{backend}-{wait}.log")
                try:
                    asyncio.run(drive(port, 4, 200, 2.0, body))  # warm-up, not reported
                    for level in levels:
                        quiet = wait_quiet(args.max_wait)
                        load = os.getloadavg()[0]
                        result = asyncio.run(drive(port, level, args.requests, args.seconds, body))
                        result.update(quiet=quiet, load=load)
                        rows.append((backend, wait, level, result))
                        print(f"{backend} wait={wait} c={level}: {result}", file=sys.stderr)
                finally:
                    process.send_signal(signal.SIGTERM)
                    code = process.wait(60)
                    if code != 0:
                        print(f"warning: server exited {code}", file=sys.stderr)
        alone = model_alone(run)
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f}. "
          f"ONNX Runtime model alone, batch 1: {alone:.3f} ms median.\n")
    print("| backend | micro-batching | concurrency | requests | errors | req/s | p50 ms | p99 ms | quiet start | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for backend, wait, level, r in rows:
        batching = f"{wait:g} ms" if wait else "off"
        print(f"| {backend} | {batching} | {level} | {r['requests']:.0f} | {r['errors']:.0f} | "
              f"{r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {'yes' if r['quiet'] else 'no'} | "
              f"{r['load']:.1f} |")


if __name__ == "__main__":
    main()
