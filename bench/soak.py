"""Serve soak: does ``kiln serve`` hold its memory and its latency over ten minutes of load?

A short benchmark (``bench/serve.py``) shows speed; it cannot show a slow leak (a cache that keeps
every input shape, a metric label per request, a buffer per connection) or a latency that creeps
up as the heap fragments. Those show only over time, so this runs one real server long enough.

Model: the digits MLP of ``configs/digits_mlp.yaml`` (64 -> 128 -> 64 -> 10, the default demo),
trained here into a temporary folder (well under a minute), or an existing run given by ``--run``.
A real ``kiln serve RUN --port 0`` process (ONNX Runtime, the defaults otherwise) listens on
loopback; this process is the load generator. ``--clients`` keep-alive connections (default 4)
each send ``POST /predict`` back to back for ``--minutes`` (default 10): mostly one digit as JSON,
every 50th request a batch of 32 digits instead, and every 50th (offset by 25) an 8x8 PNG
upload, so the JSON, batching and image paths all run the whole time. The bodies cycle through
real digits from scikit-learn, so answers differ. A minimal asyncio HTTP/1.1 client (as in
``bench/serve.py``) keeps the client's own cost small; latency is from writing the request to
reading the whole answer. Any answer other than 200, a dropped connection or a request that takes
over 30 s counts as an error, with its status (0 for the last two).

Every ``--interval`` seconds (default 10) the server's process tree (the ``kiln serve`` process
and any children, i.e. the workers with ``--workers N``) is sampled with psutil: resident memory
(RSS), threads and open file descriptors. Printed, as markdown for ``bench/README.md``: per minute
the requests, errors, p50, p99 and max latency; the RSS series (first, after the warm-up, last,
max) with its growth after the warm-up (``--warmup`` s, default 60: the allocator and the runtime
settle first) and the slope of a line fitted through the samples after it. The raw figures (every
request's time, latency, status and kind, every sample) go to ``--out`` as JSON.

    .venv/bin/python bench/soak.py                            # 10 minutes, 4 clients
    .venv/bin/python bench/soak.py --minutes 1 --warmup 10    # a quick check that it works
    .venv/bin/python bench/soak.py --run runs/digits_mlp_20261206_120000 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from quiet import wait_quiet  # bench/quiet.py (this folder is on sys.path)

from serve import free_port  # bench/serve.py

ROOT = Path(__file__).resolve().parents[1]
REQUEST_TIMEOUT = 30.0  # seconds; a request slower than this is an error, not a hang
EVERY = 50  # one request in EVERY is a batch of 32, one (offset by half) an image
BIG_BATCH = 32


@dataclass
class Records:
    """Every request (seconds since the start, latency in ms, HTTP status or 0, kind) and every
    sample of the server's process tree."""

    t: list[float] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # what status 0 was, by exception
    samples: list[dict[str, float]] = field(default_factory=list)


def build_run(output: Path) -> Path:
    """A model package of the digits MLP, trained as ``kiln train -c configs/digits_mlp.yaml`` does."""
    from kiln.config import load_config
    from kiln.train import Trainer

    cfg = load_config(ROOT / "configs" / "digits_mlp.yaml", [
        f"run.output_dir={output}", "run.progress=false", "tracking.backends=[jsonl]",
    ])
    return Trainer(cfg, quiet=True).fit().run_dir


def start(run: Path, workers: int, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A ``kiln serve`` process on a free loopback port, once ``/ready`` answers 200."""
    port = free_port()
    args = [sys.executable, "-m", "kiln", "serve", str(run), "--port", str(port),
            "--workers", str(workers)]
    process = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kiln serve exited {process.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"kiln serve did not become ready in 180 s: {log.read_text()}")


def request_bytes(body: bytes, content_type: str) -> bytes:
    return (b"POST /predict HTTP/1.1\r\nHost: soak\r\nContent-Type: " + content_type.encode()
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def bodies() -> dict[str, list[bytes]]:
    """Whole requests of each kind, built from real digits (pixels 0..16 in scikit-learn)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits().images[:256]  # (n, 8, 8), 0..16
    scaled = (digits / 16).round(4)  # the units JSON instances take for digits: 0..1

    def png(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(np.clip(image * 16, 0, 255).astype(np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()

    def instances(batch: np.ndarray) -> bytes:
        return json.dumps({"instances": batch.reshape(len(batch), -1).tolist()}).encode()

    return {
        "json1": [request_bytes(instances(scaled[i:i + 1]), "application/json") for i in range(64)],
        f"json{BIG_BATCH}": [request_bytes(instances(scaled[i:i + BIG_BATCH]), "application/json")
                             for i in range(0, 256, BIG_BATCH)],
        "png": [request_bytes(png(digits[i]), "image/png") for i in range(16)],
    }


async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bool]:
    """Send one request, read the whole answer; its status and whether the server keeps the
    connection open."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:] if line)}
    await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return int(lines[0].split()[1]), headers.get(b"connection", b"").lower() != b"close"


async def client(index: int, port: int, start: float, stop_at: float, kinds: dict[str, list[bytes]],
                 records: Records) -> None:
    """One keep-alive connection sending requests back to back until ``stop_at``; a dropped
    connection is recorded and a new one opened."""
    count = index * 7  # the clients start at different points of the mix
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.perf_counter() < stop_at:
        count += 1
        kind = (f"json{BIG_BATCH}" if count % EVERY == 0 else
                "png" if count % EVERY == EVERY // 2 else "json1")
        pool = kinds[kind]
        began = time.perf_counter()
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            status, keep = await asyncio.wait_for(one(*connection, pool[count % len(pool)]), REQUEST_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ValueError) as exc:
            status, keep = 0, False
            name = type(exc).__name__
            records.failures[name] = records.failures.get(name, 0) + 1
        ended = time.perf_counter()
        records.t.append(round(ended - start, 4))
        records.ms.append(round((ended - began) * 1000, 4))
        records.status.append(status)
        records.kind.append(kind)
        if not keep and connection is not None:
            connection[1].close()
            connection = None
            if status == 0:
                await asyncio.sleep(0.1)  # a server that refuses is not hammered
    if connection is not None:
        connection[1].close()


def sample_tree(pid: int) -> dict[str, float]:
    """RSS (MiB), threads and open file descriptors of process ``pid`` and all its children."""
    root = psutil.Process(pid)
    rss = threads = fds = 0
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        try:
            with process.oneshot():
                rss += process.memory_info().rss
                threads += process.num_threads()
                fds += process.num_fds()
        except psutil.NoSuchProcess:  # a worker between restarts
            continue
    return {"rss_mib": rss / 2**20, "processes": len(processes), "threads": threads, "fds": fds,
            "load1": os.getloadavg()[0]}


async def sampler(pid: int, start: float, stop_at: float, interval: float, records: Records) -> None:
    """Sample the server's process tree at the start, every ``interval`` s, and at the end."""
    while True:
        now = time.perf_counter()
        records.samples.append({"t": round(now - start, 3), **sample_tree(pid)})
        if now >= stop_at:
            return
        await asyncio.sleep(min(interval, max(0.0, stop_at - now)))


async def soak(port: int, pid: int, args: argparse.Namespace, kinds: dict[str, list[bytes]]) -> Records:
    records = Records()
    start = time.perf_counter()
    stop_at = start + args.minutes * 60
    await asyncio.gather(sampler(pid, start, stop_at, args.interval, records),
                         *(client(i, port, start, stop_at, kinds, records) for i in range(args.clients)))
    return records


def per_minute(records: Records, minutes: float) -> list[dict[str, float]]:
    """Requests, errors and latency percentiles of each minute, by the time a request ended (the
    few that end after the last second belong to the last minute)."""
    t, ms, status = np.asarray(records.t), np.asarray(records.ms), np.asarray(records.status)
    batch1 = np.asarray(records.kind) == "json1"
    last = max(1, int(np.ceil(minutes))) - 1
    minute_of = np.minimum(t // 60, last).astype(int)
    rows = []
    for minute in range(last + 1):
        inside = minute_of == minute
        if not inside.any():
            continue
        m, one = ms[inside], ms[inside & batch1]
        rows.append({"minute": minute + 1, "requests": int(inside.sum()),
                     "errors": int((status[inside] != 200).sum()),
                     "p50": float(np.percentile(m, 50)), "p99": float(np.percentile(m, 99)),
                     "max": float(m.max()),
                     "json1_p50": float(np.percentile(one, 50)) if len(one) else float("nan"),
                     "json1_p99": float(np.percentile(one, 99)) if len(one) else float("nan")})
    return rows


def rss_summary(samples: list[dict[str, float]], warmup: float) -> dict[str, Any]:
    """First, after-warm-up, last and max RSS, the growth after the warm-up and its slope."""
    rss = [s["rss_mib"] for s in samples]
    after = [s for s in samples if s["t"] >= warmup]
    summary: dict[str, Any] = {"first": rss[0], "last": rss[-1], "max": max(rss), "min": min(rss),
                               "after_warmup": None, "growth": None, "slope_mib_per_min": None}
    if len(after) >= 2:  # a run shorter than its warm-up has no growth to speak of
        summary["after_warmup"] = after[0]["rss_mib"]
        summary["growth"] = after[-1]["rss_mib"] - after[0]["rss_mib"]
        t = np.asarray([s["t"] for s in after]) / 60
        summary["slope_mib_per_min"] = float(np.polyfit(t, [s["rss_mib"] for s in after], 1)[0])
    return summary


def machine() -> dict[str, Any]:
    import onnxruntime

    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__}


def report(rows: list[dict[str, float]], rss: dict[str, Any], records: Records, args: argparse.Namespace,
           info: dict[str, Any], exit_code: int | None) -> str:
    def mib(value: float | None, digits: int = 1) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    status = np.asarray(records.status)
    codes = {int(c): int((status == c).sum()) for c in np.unique(status)}
    samples = records.samples
    lines = [
        f"{info['date']}; {info['cpu']}, {info['cores']} cores; Python {info['python']}, onnxruntime "
        f"{info['onnxruntime']}; {args.clients} clients, {args.minutes:g} min, workers {args.workers}; "
        f"load average {samples[0]['load1']:.2f} at the start, {samples[-1]['load1']:.2f} at the end",
        "",
        "| minute | requests | errors | p50 ms | p99 ms | max ms | batch-1 JSON p50 ms | batch-1 JSON p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {r['minute']} | {r['requests']} | {r['errors']} | {r['p50']:.2f} | {r['p99']:.2f} | "
          f"{r['max']:.1f} | {r['json1_p50']:.2f} | {r['json1_p99']:.2f} |" for r in rows),
        "",
        f"Requests {len(status)}, statuses {codes}, connection failures {records.failures or 'none'}; "
        f"server exit code {exit_code} after SIGTERM.",
        f"RSS of the server's tree (MiB), {len(samples)} samples every {args.interval:g} s: first "
        f"{mib(rss['first'])}, after the {args.warmup:g} s warm-up {mib(rss['after_warmup'])}, last "
        f"{mib(rss['last'])}, max {mib(rss['max'])}; growth after the warm-up {mib(rss['growth'], 3)} "
        f"(fitted slope {mib(rss['slope_mib_per_min'], 4)} MiB/min).",
        f"Threads {samples[0]['threads']:.0f} -> {samples[-1]['threads']:.0f}, open fds "
        f"{samples[0]['fds']:.0f} -> {samples[-1]['fds']:.0f}.",
        "RSS series (MiB): " + ", ".join(f"{s['t']:.0f}s {s['rss_mib']:.1f}" for s in samples),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to keep the load on")
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive connections")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds before the RSS baseline that growth is measured from")
    parser.add_argument("--workers", type=int, default=1, help="kiln serve --workers")
    parser.add_argument("--run", type=Path, default=None,
                        help="serve this run directory instead of training the digits MLP")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json",
                        help="where the raw figures go (JSON)")
    parser.add_argument("--max-wait", type=float, default=30.0,
                        help="before starting, wait up to this long for the machine to be quiet")
    args = parser.parse_args()
    kinds = bodies()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            print("training the digits MLP (configs/digits_mlp.yaml)...", file=sys.stderr)
            run = build_run(Path(tmp))
        log = Path(tmp) / "serve.log"
        process, port = start(run, args.workers, log)
        exit_code: int | None = None
        try:
            quiet = wait_quiet(args.max_wait)
            print(f"serving {run} on port {port} (pid {process.pid}); quiet start: {quiet}; "
                  f"soaking for {args.minutes:g} min...", file=sys.stderr)
            records = asyncio.run(soak(port, process.pid, args, kinds))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                exit_code = process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
            if exit_code != 0:
                print(f"warning: kiln serve exited {exit_code}:\n{log.read_text()}", file=sys.stderr)
    rows = per_minute(records, args.minutes)
    rss = rss_summary(records.samples, args.warmup)
    info = machine()
    raw = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "quiet_start": quiet,
           "server_exit_code": exit_code, "per_minute": rows, "rss": rss, "records": asdict(records)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(raw), encoding="utf-8")
    print(report(rows, rss, records, args, info, exit_code))
    print(f"raw figures: {args.out}", file=sys.stderr)
    errors = sum(r["errors"] for r in rows)
    return 1 if errors or exit_code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
