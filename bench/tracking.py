"""What kiln's tracking costs: per logged metric on the training thread, and per training run.

Part 1, **per metric on the calling thread.** Every call is timed on its own (``perf_counter_ns``)
and the blocks alternate in one process, the order rotating every round:

* ``kiln``: a ``MultiTracker`` built the way a run builds it for ``tracking.backends=[jsonl,mlflow]``
  (kiln's own ``build_trackers``; since kiln a04a81a the MLflow tracker runs in a niced child
  process, to which kiln's background thread pickles each record over a pipe). The figure is what
  the training thread pays: the events.jsonl line (JSON encoding, ``write`` and ``flush`` to the
  page cache, synchronous by design since events.jsonl is the truth), the ``put_nowait`` on the
  bounded queue, and any wait for the GIL held by kiln's own threads. Logged back to back
  (``burst``, one metric or a dict of ten per call) and ``paced``: one call of the two metrics
  kiln logs per step (``train_loss``, ``lr``) after each real optimizer step of an MLP like the
  one of part 2, which is how the trainer calls it. After every kiln block the benchmark waits
  until the block's last record is in the SQLite store (that wait, off the training thread, gives
  the MLflow side's throughput) so no block overlaps the next.
* ``jsonl only``: a ``MultiTracker`` with no other tracker (``backends=[jsonl]``): the part of the
  kiln figure that is the events.jsonl write; burst and paced like the kiln blocks.
* ``mlflow sync``: ``MlflowClient(uri).log_metric(run_id, key, value, step=i)`` to a SQLite store,
  the synchronous call one would put in the loop; ``mlflow sync batch x10``: ``log_batch`` of ten.
* ``mlflow async``: ``log_metric(..., synchronous=False)``, MLflow's own background queue
  (flushed with ``mlflow.flush_async_logging()`` after the block, not timed).

A cProfile of the kiln call (events.jsonl plus the queue hand-off, to a no-op tracker) shows
where its microseconds go.

Part 2, **whole run.** The same small training run (synthetic 28x28 data, MLP 256-128-64,
batch 64, checkpointing off, no progress bar), alternating in one process, the order rotating:

* ``off``: tracking as small as kiln allows: ``backends=[jsonl]`` (events.jsonl cannot be turned
  off), ``system_metrics=false``, and no step metrics (``log_every_n_steps`` larger than the run);
* ``mlflow/50``: ``backends=[jsonl,mlflow]`` with kiln's defaults otherwise (loss and lr every 50
  steps, system metrics every 10 s, the model logged to MLflow at the end);
* ``mlflow/1``: the same, logging every step, to stress the MLflow side.

Each MLflow side has its own SQLite store, created by a warm-up run before the timed rounds and
reused by every round, as kiln's default ``runs/mlflow.db`` is (a brand-new store adds seconds of
schema migrations, once). An epoch is timed by an event clock (``epoch_start`` to the next; the
last ends at ``fit_end``) and the first epoch of every run is discarded; the loop (every epoch) is
reported too, and so are the epochs that began after the MLflow worker had created its run, since
the worker's start-up (imports, opening the store) takes seconds of CPU that overlap the first
epochs. Beside wall time, every epoch's CPU time of the training thread (``time.thread_time``) is
reported: the work the thread did, which the host's pre-emption of this guest does not inflate
(the host's share, *steal* in ``/proc/stat``, is reported per run). The whole ``fit()`` is timed, and its end phase (after ``fit_end``: test pass, model
package, the MLflow model, the drain, closing) is reported on its own: it is outside the loop.
From the seconds MLflow adds outside the loop and the per-epoch ratio, the report derives the
length of training loop from which the whole run's overhead is under the target.

The machine is shared: the CPU other processes used during each block or run (from
``/proc/stat``; the MLflow worker counts as this process's own) is reported beside the figures.
``torch.set_num_threads`` is fixed (``--threads``).

    .venv/bin/python bench/tracking.py                      # everything, about 10 minutes
    .venv/bin/python bench/tracking.py --parts calls,profile --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from stats import median_ci, verdict  # bench/stats.py (this folder is on sys.path)
from torch import nn
from typing_extensions import override

from kiln.config import KilnConfig, load_config
from kiln.data.build import build_data
from kiln.data.spec import DataBundle
from kiln.tracking.jsonl import JsonlTracker
from kiln.tracking.multi import MultiTracker
from kiln.train import Callback, Trainer, TrainState

PER_METRIC_TARGET_US = 10.0  # kiln, on the training thread, from the issue
OVERHEAD_TARGET = 1.03  # epoch time with MLflow on / all tracking off

# Part 1 blocks: name -> metrics per call. The kiln blocks wait for the MLflow drain afterwards.
CALL_BLOCKS: dict[str, int] = {
    "kiln burst": 1,
    "kiln burst x10": 10,
    "kiln paced": 2,
    "jsonl only": 1,
    "jsonl only paced": 2,
    "mlflow sync": 1,
    "mlflow sync batch x10": 10,
    "mlflow async": 1,
}

# Part 2 sides: name -> (description, overrides on top of the shared run config).
RUN_SIDES: dict[str, tuple[str, list[str]]] = {
    "off": (
        "backends=[jsonl], system_metrics=false, no step metrics",
        ["tracking.backends=[jsonl]", "tracking.system_metrics=false",
         "tracking.log_every_n_steps=1000000000"],
    ),
    "mlflow/50": ("backends=[jsonl,mlflow], defaults (every 50 steps)", ["tracking.backends=[jsonl,mlflow]"]),
    "mlflow/1": (
        "backends=[jsonl,mlflow], log_every_n_steps=1",
        ["tracking.backends=[jsonl,mlflow]", "tracking.log_every_n_steps=1"],
    ),
}


def log(message: str) -> None:
    """Progress notes go to stderr; stdout carries only the markdown report."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The machine


class Others:
    """Average cores used by *other* processes: busy time in ``/proc/stat`` minus this process's."""

    def __init__(self) -> None:
        self.available = Path("/proc/stat").is_file()
        self.tick = os.sysconf("SC_CLK_TCK") if self.available else 100

    def mark(self) -> tuple[float, float, float, float]:
        busy = steal = 0.0
        if self.available:
            with open("/proc/stat", encoding="ascii") as f:
                ticks = [int(x) for x in f.readline().split()[1:9]]
            busy = (sum(ticks) - ticks[3] - ticks[4] - ticks[7]) / self.tick  # minus idle, iowait, steal
            steal = ticks[7] / self.tick  # a guest's vCPU waiting while the host runs something else
        own = os.times()  # children: kiln's tracker workers, counted once they have been waited for
        return time.perf_counter(), busy, own.user + own.system + own.children_user + own.children_system, steal

    def since(self, start: tuple[float, float, float, float]) -> float:
        now = self.mark()
        wall = now[0] - start[0]
        return max(0.0, (now[1] - start[1]) - (now[2] - start[2])) / wall if wall > 0 else 0.0

    def steal_since(self, start: tuple[float, float, float, float]) -> float:
        """Average vCPUs the host took away (``steal`` in ``/proc/stat``) since ``start``."""
        now = self.mark()
        wall = now[0] - start[0]
        return (now[3] - start[3]) / wall if wall > 0 else 0.0


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, versions and the date, for the README."""
    model = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    ram = "unknown"
    if Path("/proc/meminfo").is_file():
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kib / 2**20:.1f} GiB"
    import mlflow

    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mlflow": mlflow.__version__,
        "threads": str(torch.get_num_threads()),
        "date": subprocess.run(["date"], capture_output=True, text=True).stdout.strip(),
        "kiln": kiln_revision(),
    }


def kiln_revision() -> str:
    """The commit kiln is at, marked when ``src/kiln/tracking`` has uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "src/kiln/tracking", "src/kiln/train"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (+ uncommitted changes in src/kiln/tracking or train)" if dirty else head


# ---------------------------------------------------------------------------------------------
# Part 1: per-metric cost on the calling thread


def time_calls(call: Callable[[int], object], start: int, n: int) -> list[int]:
    """Nanoseconds of each of ``n`` calls ``call(start)``, ``call(start + 1)``, ..."""
    clock = time.perf_counter_ns
    out = []
    for i in range(start, start + n):
        began = clock()
        call(i)
        out.append(clock() - began)
    return out


def mlp_step() -> Callable[[], float]:
    """One optimizer step of the benchmark's MLP on a batch of 64 (paces the ``kiln paced`` block)."""
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    inputs, targets = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(inputs), targets)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        return float(loss.item())

    return step


@dataclass
class CallResult:
    """Nanoseconds per call of every block, round by round, and what happened around them."""

    calls: dict[str, list[list[int]]] = field(default_factory=dict)  # block -> rounds -> ns per call
    others: dict[str, list[float]] = field(default_factory=dict)  # block -> cores others used
    drain_s: dict[str, list[float]] = field(default_factory=dict)  # block -> wait for the backlog
    records: dict[str, int] = field(default_factory=dict)  # block -> records per block
    dropped: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    startup_s: float = 0.0  # building kiln's tracker until a first metric is in the new store
    timer_ns: float = 0.0  # median of timing an empty call: included in every figure

    def pooled(self, block: str) -> list[int]:
        return [ns for rnd in self.calls[block] for ns in rnd]

    def per_metric_us(self, block: str) -> float:
        return statistics.median(self.pooled(block)) / CALL_BLOCKS[block] / 1e3

    def round_medians_us(self, block: str) -> list[float]:
        """Per round: the block's median per metric, in microseconds."""
        return [statistics.median(rnd) / CALL_BLOCKS[block] / 1e3 for rnd in self.calls[block]]

    def round_ratio(self, slow: str, fast: str) -> list[float]:
        """Per round: median per metric of ``slow`` over that of ``fast``, measured side by side."""
        return [
            (statistics.median(s) / CALL_BLOCKS[slow]) / (statistics.median(f) / CALL_BLOCKS[fast])
            for s, f in zip(self.calls[slow], self.calls[fast], strict=True)
        ]


class Landed:
    """Polls the SQLite store kiln's MLflow tracker writes to: has a metric reached MLflow yet?

    ``MultiTracker.flush`` only says the records left the fan-out thread; the tracker behind it may
    still be writing them (in its own process, since kiln a04a81a), so the store is what counts.
    """

    def __init__(self, uri: str, logs: Path) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(uri)
        self.logs = logs
        self.run_id: str | None = None

    def count(self, key: str) -> int:
        if self.run_id is None:
            from kiln.tracking.mlflow import read_link

            link = read_link(self.logs)
            if link is None:
                return 0
            self.run_id = str(link["run_id"])
        return len(self.client.get_metric_history(self.run_id, key))

    def wait(self, key: str, count: int, timeout: float) -> float:
        """Seconds until ``key`` has ``count`` values in the store (polled every 0.1 s)."""
        started = time.perf_counter()
        while self.count(key) < count:
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{key}: fewer than {count} values reached MLflow in {timeout:.0f} s")
            time.sleep(0.1)
        return time.perf_counter() - started


def kiln_tracker(root: Path, queue_size: int) -> tuple[MultiTracker, Landed]:
    """A MultiTracker built the way a run builds it for ``tracking.backends=[jsonl,mlflow]``
    (``build_trackers``), MLflow to a new SQLite store under ``root``."""
    from kiln.tracking.multi import build_trackers

    uri = f"sqlite:///{(root / 'mlflow.db').resolve()}"
    cfg = load_config(None, [
        "run.name=bench-tracking", f"run.output_dir={root}", "tracking.backends=[jsonl,mlflow]",
        f"tracking.uri={uri}", f"tracking.queue_size={queue_size}",
    ])
    logs = root / "logs"
    jsonl = JsonlTracker(logs / "events.jsonl")
    factories = build_trackers(cfg, logs, "kiln", {})
    return MultiTracker(jsonl, factories, cfg.tracking.queue_size), Landed(uri, logs)


def bench_calls(args: argparse.Namespace, others: Others) -> CallResult:
    """Part 1: every block of CALL_BLOCKS once per round, the order rotating."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    result = CallResult()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-tracking-") as tmp_name:
        tmp = Path(tmp_name)
        queue_size = 4 * args.calls * len(CALL_BLOCKS) + 1000  # never full: nothing is dropped
        log("part 1: starting kiln's MLflow tracker on a new store (import, migrations) ...")
        began = time.perf_counter()
        kiln, landed = kiln_tracker(tmp / "kiln", queue_size)
        kiln.log_metrics({"ready": 1.0}, 0, "step")
        landed.wait("step/ready", 1, timeout=600)
        result.startup_s = time.perf_counter() - began
        floor = MultiTracker(JsonlTracker(tmp / "floor" / "events.jsonl"), {})
        client = MlflowClient(f"sqlite:///{tmp / 'sync.db'}")
        run_id = client.create_run(client.create_experiment("bench-sync")).info.run_id
        step = mlp_step()
        for _ in range(20):
            step()
        result.timer_ns = statistics.median(time_calls(lambda i: None, 0, 10_000))

        def paced(tracker: MultiTracker) -> Callable[[int, int], list[int]]:
            """Calls of ``tracker`` as the trainer makes them: one after each optimizer step."""

            def block(start: int, n: int) -> list[int]:
                out = []
                for i in range(start, start + n):
                    loss = step()
                    began = time.perf_counter_ns()
                    tracker.log_metrics({"train_loss": loss, "lr": 1e-3}, i, "step")
                    out.append(time.perf_counter_ns() - began)
                return out

            return block

        ten = [f"metric_{j}" for j in range(10)]
        # name -> (calls per round, the timed block, the MLflow key to wait for afterwards)
        blocks: dict[str, tuple[int, Callable[[int, int], list[int]], str | None]] = {
            "kiln burst": (args.calls, lambda s, n: time_calls(
                lambda i: kiln.log_metrics({"loss": i * 1e-3}, i, "step"), s, n), "step/loss"),
            "kiln burst x10": (args.calls, lambda s, n: time_calls(
                lambda i: kiln.log_metrics({k: i * 1e-3 for k in ten}, i, "step"), s, n), "step/metric_9"),
            "kiln paced": (args.calls, paced(kiln), "step/train_loss"),
            "jsonl only": (10 * args.calls, lambda s, n: time_calls(
                lambda i: floor.log_metrics({"loss": i * 1e-3}, i, "step"), s, n), None),
            "jsonl only paced": (args.calls, paced(floor), None),
            "mlflow sync": (args.sync_calls, lambda s, n: time_calls(
                lambda i: client.log_metric(run_id, "loss", i * 1e-3, step=i), s, n), None),
            "mlflow sync batch x10": (args.sync_calls, lambda s, n: time_calls(
                lambda i: client.log_batch(run_id, metrics=[
                    Metric(k, i * 1e-3, int(time.time() * 1000), i) for k in ten]), s, n), None),
            "mlflow async": (args.calls, lambda s, n: time_calls(
                lambda i: client.log_metric(run_id, "loss_async", i * 1e-3, step=i, synchronous=False), s, n),
                None),
        }
        names = list(blocks)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                n, block, key = blocks[name]
                mark = others.mark()
                ns = block(r * n, n)
                after = time.perf_counter()
                if key is not None:  # the backlog reaches MLflow before the next block starts
                    kiln.flush(timeout=600)
                    landed.wait(key, (r + 1) * n, timeout=600)
                elif name == "mlflow async":
                    mlflow.flush_async_logging()
                result.drain_s.setdefault(name, []).append(time.perf_counter() - after)
                result.others.setdefault(name, []).append(others.since(mark))
                result.calls.setdefault(name, []).append(ns)
                result.records[name] = n
            line = "  ".join(
                f"{b} {statistics.median(result.calls[b][-1]) / CALL_BLOCKS[b] / 1e3:.1f}" for b in names
            )
            log(f"part 1 round {r + 1}/{args.rounds}, us per metric (median): {line}")
        result.dropped = kiln.dropped
        kiln.close("completed")
        result.failures = dict(kiln.failures)
        floor.close("completed")
    return result


class _NullTracker:
    """A tracker that does nothing: lets the profile include the queue hand-off but not MLflow."""

    name = "null"

    def log_params(self, params: Any) -> None: ...
    def log_metrics(self, metrics: Any, step: int, scope: Any) -> None: ...
    def log_event(self, event: str, data: Any) -> None: ...
    def log_artifact(self, path: Path) -> None: ...
    def close(self, status: str) -> None: ...


def profile_calls(calls: int) -> list[str]:
    """cProfile of ``calls`` one-metric ``MultiTracker.log_metrics`` calls on the calling thread
    (events.jsonl plus the queue hand-off to a no-op tracker): where kiln's microseconds go."""
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory(prefix="kiln-bench-profile-") as tmp:
        tracker = MultiTracker(JsonlTracker(Path(tmp) / "events.jsonl"), {"null": _NullTracker},
                               queue_size=calls + 100)
        tracker.flush()
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(calls):
            tracker.log_metrics({"loss": i * 1e-3}, i, "step")
        profiler.disable()
        tracker.close("completed")
    stats = pstats.Stats(profiler)
    # (file, line, function) -> (primitive calls, calls, own time, cumulative time, callers)
    rows: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in rows.values())
    root = str(Path(__file__).resolve().parents[1]) + "/"
    lines = [
        f"cProfile of {calls:,} one-metric `log_metrics` calls (jsonl plus the queue hand-off to a "
        f"no-op tracker; the profiler inflates every figure, the shares are what count):",
        "",
        "| function | calls | own time, share of total | with callees, us per `log_metrics` call |",
        "|---|---:|---:|---:|",
    ]
    for (path, line, func), (_, ncalls, own, cumulative, _) in sorted(
        rows.items(), key=lambda item: item[1][2], reverse=True
    )[:8]:
        short = path.removeprefix(root)
        short = short.split("/lib/", 1)[1] if "/lib/python" in short else short
        where = f"{short}:{line}({func})" if line else func
        lines.append(f"| `{where}` | {ncalls:,} | {own / total:.0%} | {cumulative / calls * 1e6:.2f} |")
    return lines


# ---------------------------------------------------------------------------------------------
# Part 2: whole run


class Clock(Callback):
    """Wall time of every epoch (``epoch_start`` to the next, the last to ``fit_end``), the CPU
    time of the training thread in it, and the moments the loop starts and ends."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.cpu_started = 0.0
        self.first: float | None = None
        self.ended: float | None = None
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []  # the training thread's own CPU time (time.thread_time)
        self.wall_starts: list[float] = []  # time.time() of every epoch_start, to compare with MLflow

    @override
    def on_epoch_start(self, state: TrainState) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.wall_starts.append(time.time())
        if self.started is not None:
            self.seconds.append(now - self.started)
            self.cpu_seconds.append(cpu - self.cpu_started)
        self.first = self.first or now
        self.started, self.cpu_started = now, cpu

    @override
    def on_fit_end(self, state: TrainState) -> None:
        assert self.started is not None
        self.ended = time.perf_counter()
        self.seconds.append(self.ended - self.started)
        self.cpu_seconds.append(time.thread_time() - self.cpu_started)


@dataclass
class RunRecord:
    """One fit: event-clock epochs (first discarded), kiln's epoch_time metric and the phases."""

    side: str
    epochs: list[float]
    epochs_cpu: list[float]  # the training thread's CPU seconds in the same epochs
    first_epoch: float  # discarded from ``epochs``: it overlaps the MLflow tracker's start-up
    epoch_time: list[float]
    loop_s: float  # first epoch_start to fit_end: every epoch, the first included
    wall_s: float  # the whole fit() call
    setup_s: float  # fit() to the first epoch_start
    end_s: float  # fit_end to the return of fit(): test, model package, MLflow model, drain, close
    others: float  # cores other processes used during the fit
    steal: float  # vCPUs the host took away during the fit (/proc/stat steal)
    worker_cpu_s: float  # CPU seconds of child processes (kiln's MLflow worker) during the fit
    dropped: int
    unsent: int
    failures: dict[str, str]
    mlflow_steps: int | None  # step/train_loss values that reached MLflow
    worker_up_s: float | None  # fit() start to the MLflow worker creating its run
    epochs_up: list[float]  # epochs (after the first) that began once the MLflow run existed


def run_config(side: str, args: argparse.Namespace, output_dir: Path, epochs: int) -> KilnConfig:
    """The shared run config plus the side's tracking overrides (MLflow to the side's own store)."""
    return load_config(
        None,
        [
            "run.name=bench",
            f"run.output_dir={output_dir}",
            "run.progress=false",
            "data.name=synthetic",
            f"data.synthetic.n_samples={args.samples}",
            "model.name=mlp",
            "model.hidden=[256,128,64]",
            "training.batch_size=64",
            f"training.epochs={epochs}",
            "checkpoint.enabled=false",
            f"tracking.uri=sqlite:///{(output_dir / 'mlflow.db').resolve()}",
            *RUN_SIDES[side][1],
        ],
    )


def mlflow_run(run_dir: Path) -> tuple[int, float] | None:
    """How many ``step/train_loss`` values the MLflow run holds, and when it was created
    (``time.time()`` seconds); None without MLflow."""
    from kiln.tracking.mlflow import read_link

    link = read_link(run_dir / "logs")
    if link is None:
        return None
    from mlflow import MlflowClient

    client = MlflowClient(link["tracking_uri"])
    run_id = str(link["run_id"])
    return len(client.get_metric_history(run_id, "step/train_loss")), client.get_run(run_id).info.start_time / 1000


def run_fit(side: str, cfg: KilnConfig, data: DataBundle, others: Others) -> RunRecord:
    """One ``Trainer(cfg, quiet=True).fit()`` with the event clock."""
    clock = Clock()
    trainer = Trainer(cfg, data=data, callbacks=[clock], quiet=True)
    mark = others.mark()
    children = os.times()
    began_wall = time.time()
    began = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - began
    used, steal = others.since(mark), others.steal_since(mark)
    after = os.times()
    if result.status != "completed":
        raise RuntimeError(f"{side}: run {result.run_dir} ended {result.status}")
    assert trainer.components is not None and trainer.state is not None
    assert clock.first is not None and clock.ended is not None
    tracker = trainer.components.tracker
    mlflow = mlflow_run(result.run_dir)
    up = None if mlflow is None else mlflow[1]
    return RunRecord(
        side=side,
        epochs=clock.seconds[1:],
        epochs_cpu=clock.cpu_seconds[1:],
        first_epoch=clock.seconds[0],
        epoch_time=[h["epoch_time"] for h in trainer.state.history][1:],
        loop_s=clock.ended - clock.first,
        wall_s=wall,
        setup_s=clock.first - began,
        end_s=began + wall - clock.ended,
        others=used,
        steal=steal,
        worker_cpu_s=(after.children_user + after.children_system)
        - (children.children_user + children.children_system),
        dropped=tracker.dropped,
        unsent=tracker.unsent,
        failures=dict(tracker.failures),
        mlflow_steps=None if mlflow is None else mlflow[0],
        worker_up_s=None if up is None else up - began_wall,
        epochs_up=[
            seconds for seconds, start in zip(clock.seconds[1:], clock.wall_starts[1:], strict=True)
            if up is None or start >= up
        ],
    )


def bench_runs(args: argparse.Namespace, others: Others) -> tuple[list[RunRecord], int]:
    """Part 2: a warm-up run per side (creates each MLflow store), then ``rounds`` rotating rounds.

    Returns the timed records and the optimizer steps of one run.
    """
    records: list[RunRecord] = []
    sides: list[str] = args.sides
    with tempfile.TemporaryDirectory(prefix="kiln-bench-runs-") as tmp_name:
        tmp = Path(tmp_name)
        dirs = {side: tmp / side.replace("/", "_") for side in sides}
        configs = {side: run_config(side, args, dirs[side], args.epochs) for side in sides}
        cfg = configs["off"]
        data = build_data(cfg.data, cfg.run.seed)
        steps = args.epochs * -(-len(data.train) // cfg.training.batch_size)  # type: ignore[arg-type]
        for side in sides:
            log(f"part 2: warm-up run, {side}")
            run_fit(side, run_config(side, args, dirs[side], 2), data, others)
        for r in range(args.run_rounds):
            for side in sides[r % len(sides):] + sides[: r % len(sides)]:
                records.append(run_fit(side, configs[side], data, others))
            mine = records[-len(sides):]
            off = next(x for x in mine if x.side == "off")
            line = "  ".join(
                f"{x.side} {statistics.median(x.epochs):.3f} s (x{statistics.median(x.epochs) / statistics.median(off.epochs):.3f}, "
                f"thread CPU x{statistics.median(x.epochs_cpu) / statistics.median(off.epochs_cpu):.3f}, "
                f"wall {x.wall_s:.1f} s, end {x.end_s:.1f} s, steal {x.steal:.2f})"
                for x in sorted(mine, key=lambda x: sides.index(x.side))
            )
            log(f"part 2 round {r + 1}/{args.run_rounds}: {line}  (others ~{max(x.others for x in mine):.1f} cores)")
    return records, steps


# ---------------------------------------------------------------------------------------------
# Report


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report_calls(res: CallResult, args: argparse.Namespace) -> list[str]:
    kiln_us = res.per_metric_us("kiln burst")
    ratios = res.round_ratio("mlflow sync", "kiln burst")
    lines = [
        f"Part 1: {args.rounds} rounds; per round {args.calls} calls of each kiln block and of "
        f"`mlflow async`, {10 * args.calls} of `jsonl only`, {args.sync_calls} of each synchronous "
        f"MLflow block; every figure includes the timer itself (an empty call: "
        f"{res.timer_ns / 1e3:.2f} us). *Wait after* is the time, off the training thread, until "
        "every record of the block was in the SQLite store (kiln) or flushed (`mlflow async`).",
        "",
        "| block | metrics per call | median per call, us | p99 per call, us | mean per call, us "
        "| **median per metric, us** | wait after, s (median) | others' cores (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for block in res.calls:
        pooled = [ns / 1e3 for ns in res.pooled(block)]
        lines.append(
            f"| {block} | {CALL_BLOCKS[block]} | {statistics.median(pooled):.1f} | {pct(pooled, 0.99):.1f} "
            f"| {statistics.mean(pooled):.1f} | **{res.per_metric_us(block):.2f}** "
            f"| {statistics.median(res.drain_s[block]):.2f} | {statistics.median(res.others[block]):.2f} |"
        )
    bursts = ("kiln burst", "kiln burst x10")
    records = sum(res.records[b] for b in bursts)
    drain = sum(statistics.median(res.drain_s[b]) for b in bursts)
    lines += [
        "",
        f"- `mlflow sync` / `kiln burst`, per metric: ratio of medians "
        f"**{res.per_metric_us('mlflow sync') / kiln_us:,.0f}x**; per-round ratio median "
        f"{statistics.median(ratios):,.0f}x (min {min(ratios):,.0f}x, max {max(ratios):,.0f}x).",
        f"- `mlflow async` / `kiln burst`: {res.per_metric_us('mlflow async') / kiln_us:.1f}x; "
        f"`mlflow sync batch x10` / `kiln burst x10`, per metric: "
        f"{res.per_metric_us('mlflow sync batch x10') / res.per_metric_us('kiln burst x10'):,.0f}x.",
        f"- Behind the queue, kiln's MLflow tracker stored about {records / drain:.0f} records/s "
        f"(one `log_batch` each; the burst blocks' wait); starting it on a new store (spawn, "
        f"imports, migrations) until a first metric was stored took {res.startup_s:.1f} s. Records "
        f"dropped for a full queue: {res.dropped}; tracker failures: {res.failures or 'none'}.",
        f"- Target <= {PER_METRIC_TARGET_US:g} us per metric on the training thread (`kiln burst`, "
        f"median): {kiln_us:.1f} us: **{'met' if kiln_us <= PER_METRIC_TARGET_US else 'missed'}**.",
    ]
    for block in ("kiln burst", "kiln paced"):  # the target judged round by round, with its interval
        rounds = res.round_medians_us(block)
        low, high = median_ci(rounds)
        lines.append(
            f"- `{block}` per metric, median of {len(rounds)} per-round medians: "
            f"{statistics.median(rounds):.2f} us (min {min(rounds):.2f}, max {max(rounds):.2f}; 95% CI "
            f"{low:.2f}-{high:.2f}): target met: "
            f"**{verdict(statistics.median(rounds), low, high, PER_METRIC_TARGET_US)}**."
        )
    return [*lines, ""]


def report_runs(records: list[RunRecord], steps: int, args: argparse.Namespace) -> list[str]:
    sides: list[str] = args.sides
    rounds = [records[i : i + len(sides)] for i in range(0, len(records), len(sides))]
    by_side = {s: [x for x in records if x.side == s] for s in sides}
    off_epoch = statistics.median(e for x in by_side["off"] for e in x.epochs)
    off_loop = statistics.median(x.loop_s for x in by_side["off"])

    def paired(side: str, value: Callable[[RunRecord], float]) -> list[float]:
        """Per round: ``side``'s value over that of ``off`` in the same round."""
        return [
            value(next(x for x in rnd if x.side == side)) / value(next(x for x in rnd if x.side == "off"))
            for rnd in rounds
        ]

    def epochs(x: RunRecord) -> float:
        return statistics.median(x.epochs)

    lines = [
        f"Part 2: {args.run_rounds} rounds x {len(sides)} runs after one warm-up run per side; "
        f"{args.samples:,} synthetic samples ({steps // args.epochs} optimizer steps per epoch), "
        f"{args.epochs} epochs per run. *Epoch*: median over the epochs after the first of every "
        "run; *loop*: first `epoch_start` to `fit_end`, every epoch included (the MLflow worker "
        "starts during the first). Per-round ratios are each side over `off` in the same round.",
        "",
        "| side | tracking | epoch s | epoch ratio: median of rounds (min-max; 95% CI) | target | met "
        "| loop s | loop ratio: median of rounds (min-max; 95% CI) | epoch s once MLflow was up (epochs) "
        "| its ratio: median of rounds | training thread CPU s per epoch | its ratio: median of rounds (min-max) |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for side in sides:
        epoch = statistics.median(e for x in by_side[side] for e in x.epochs)
        loop = statistics.median(x.loop_s for x in by_side[side])
        cpu = statistics.median(c for x in by_side[side] for c in x.epochs_cpu)
        if side == "off":
            lines.append(
                f"| {side} | {RUN_SIDES[side][0]} | {epoch:.3f} | 1 | - | - | {loop:.2f} | 1 | - | - | {cpu:.3f} | 1 |"
            )
            continue
        e, lo = paired(side, epochs), paired(side, lambda x: x.loop_s)
        c = paired(side, lambda x: statistics.median(x.epochs_cpu))
        up = [s for x in by_side[side] for s in x.epochs_up]
        up_ratio = [
            statistics.median(mine.epochs_up) / epochs(base)
            for rnd in rounds
            for mine in rnd if mine.side == side and mine.epochs_up
            for base in rnd if base.side == "off"
        ]
        e_low, e_high = median_ci(e)
        met = verdict(statistics.median(e), e_low, e_high, OVERHEAD_TARGET)
        lo_low, lo_high = median_ci(lo)
        lines.append(
            f"| {side} | {RUN_SIDES[side][0]} | {epoch:.3f} | {statistics.median(e):.3f} "
            f"({min(e):.3f}-{max(e):.3f}; CI {e_low:.3f}-{e_high:.3f}) | <= {OVERHEAD_TARGET:.2f} | {met} | {loop:.2f} "
            f"| {statistics.median(lo):.3f} ({min(lo):.3f}-{max(lo):.3f}; CI {lo_low:.3f}-{lo_high:.3f}) "
            f"| {f'{statistics.median(up):.3f} ({len(up)})' if up else '- (0)'} "
            f"| {f'{statistics.median(up_ratio):.3f} ({len(up_ratio)} rounds)' if up_ratio else '-'} "
            f"| {cpu:.3f} | {statistics.median(c):.3f} ({min(c):.3f}-{max(c):.3f}) |"
        )
    lines += [
        "",
        "(Ratios of the pooled medians: epoch "
        + ", ".join(
            f"{s} {statistics.median(e for x in by_side[s] for e in x.epochs) / off_epoch:.3f}"
            for s in sides[1:]
        )
        + "; loop "
        + ", ".join(f"{s} {statistics.median(x.loop_s for x in by_side[s]) / off_loop:.3f}" for s in sides[1:])
        + ".)",
        "",
        "Outside the training loop (medians):",
        "",
        "| side | whole fit() s | setup s | end phase s (test, model package, MLflow model, drain, "
        "close) | MLflow run created, s after fit() began | MLflow worker CPU s "
        "| step values in MLflow / logged | dropped / unsent | tracker failures | others' cores "
        "| host steal, vCPUs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for side in sides:
        xs = by_side[side]
        got = [x.mlflow_steps for x in xs if x.mlflow_steps is not None]
        every = 1 if side.endswith("/1") else 50
        sent = f"{statistics.median(got):.0f} / {steps // every}" if got else "-"
        failures = sum(bool(x.failures) for x in xs)
        ups = [x.worker_up_s for x in xs if x.worker_up_s is not None]
        lines.append(
            f"| {side} | {statistics.median(x.wall_s for x in xs):.1f} "
            f"| {statistics.median(x.setup_s for x in xs):.2f} | {statistics.median(x.end_s for x in xs):.2f} "
            f"| {f'{statistics.median(ups):.1f}' if ups else '-'} "
            f"| {statistics.median(x.worker_cpu_s for x in xs):.1f} | {sent} "
            f"| {sum(x.dropped for x in xs)} / {sum(x.unsent for x in xs)} "
            f"| {f'{failures} runs' if failures else 'none'} | {statistics.median(x.others for x in xs):.2f} "
            f"| {statistics.median(x.steal for x in xs):.2f} |"
        )
    lines += ["", *whole_run_lines(sides, rounds, paired)]
    return lines


def whole_run_lines(
    sides: list[str], rounds: list[list[RunRecord]], paired: Callable[[str, Callable[[RunRecord], float]], list[float]]
) -> list[str]:
    """The whole ``fit()`` with MLflow against ``off``, and the run length from which it is under
    the target: MLflow costs a fixed time outside the loop (the worker's start-up overlaps the
    loop; the model and the drain come after it) plus the per-epoch ratio inside it."""
    lines = []
    for side in sides[1:]:
        whole = paired(side, lambda x: x.wall_s)
        w_low, w_high = median_ci(whole)
        # the loop's ratio, not the epochs': the worker's start-up and warm-up fall in the loop
        rate = statistics.median(paired(side, lambda x: x.loop_s))
        fixed = statistics.median(  # seconds MLflow adds outside the loop, per round
            (mine.wall_s - mine.loop_s) - (base.wall_s - base.loop_s)
            for rnd in rounds for mine in rnd if mine.side == side for base in rnd if base.side == "off"
        )
        outside_off = statistics.median(x.wall_s - x.loop_s for rnd in rounds for x in rnd if x.side == "off")
        # A loop of L seconds: (L * rate + fixed + outside_off) / (L + outside_off) <= target
        if rate < OVERHEAD_TARGET:
            length = max(0.0, (fixed - (OVERHEAD_TARGET - 1) * outside_off) / (OVERHEAD_TARGET - rate))
            reach = f"under {OVERHEAD_TARGET - 1:.0%} for runs whose training loop takes at least {length:.0f} s"
        else:
            reach = f"never under {OVERHEAD_TARGET - 1:.0%}: the loop's ratio alone is {rate:.3f}"
        lines.append(
            f"- **Whole `fit()`, {side} over off:** {statistics.median(whole):.3f} (median of rounds, "
            f"{min(whole):.3f}-{max(whole):.3f}; 95% CI {w_low:.3f}-{w_high:.3f}; under "
            f"{OVERHEAD_TARGET - 1:.0%}: {verdict(statistics.median(whole), w_low, w_high, OVERHEAD_TARGET)}) for this {statistics.median(x.loop_s for r in rounds for x in r if x.side == side):.0f} s "
            f"loop. MLflow adds {fixed:.2f} s outside the loop (median of rounds) on top of the "
            f"loop's ratio {rate:.3f}, so at that ratio the whole run is {reach}."
        )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="calls,profile,runs",
                        help="comma-separated: calls (part 1), profile (cProfile of kiln's call), runs (part 2)")
    parser.add_argument("--profile-calls", type=int, default=50_000, help="calls profiled")
    parser.add_argument("--rounds", type=int, default=5, help="part 1 rounds (each runs every block once)")
    parser.add_argument("--calls", type=int, default=200, help="part 1 calls per kiln block and per round")
    parser.add_argument("--sync-calls", type=int, default=60,
                        help="part 1 calls per synchronous MLflow block and per round (milliseconds each)")
    parser.add_argument("--run-rounds", type=int, default=5, help="part 2 rounds (each runs every side once)")
    parser.add_argument("--epochs", type=int, default=6, help="part 2 epochs per run; the first is discarded")
    parser.add_argument("--samples", type=int, default=40_000, help="part 2 synthetic samples before the splits")
    parser.add_argument("--sides", default=",".join(RUN_SIDES),
                        help=f"part 2 sides, comma-separated, off among them: {', '.join(RUN_SIDES)}")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default 1: on 2 busy cores, 2 threads made steps swing 10x)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not args.parts or args.parts - {"calls", "profile", "runs"}:
        parser.error(f"--parts: choose from calls, profile, runs; got {sorted(args.parts)}")
    args.sides = [x.strip() for x in args.sides.split(",") if x.strip()]
    if "off" not in args.sides or set(args.sides) - set(RUN_SIDES) or len(set(args.sides)) < 2:
        parser.error(f"--sides: off and at least one of {', '.join(RUN_SIDES)}; got {args.sides}")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch of each run is discarded")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # this script's own process only
    torch.set_num_threads(args.threads)
    others = Others()
    info = machine()
    lines = [
        f"{info['date']}; {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; Python {info['python']}, "
        f"torch {info['torch']} ({info['threads']} threads), mlflow {info['mlflow']}; kiln {info['kiln']}",
        "",
    ]
    raw: dict[str, Any] = {"machine": info}
    if "calls" in args.parts:
        calls = bench_calls(args, others)
        lines += report_calls(calls, args)
        raw["calls"] = asdict(calls)
    if "profile" in args.parts:
        lines += [*profile_calls(args.profile_calls), ""]
    if "runs" in args.parts:
        records, steps = bench_runs(args, others)
        lines += report_runs(records, steps, args)
        raw["runs"] = [asdict(x) for x in records]
    if args.json is not None:
        args.json.write_text(json.dumps(raw), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
