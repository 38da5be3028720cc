"""How long a checkpoint save holds up the training thread: synchronous against asynchronous.

Two models, each with an Adam optimizer whose state was created by one real training step (so the
optimizer state is twice the weights, as in any Adam run):

* ``big``: ``nn.Sequential`` of ``--layers`` Linear(``--width``, ``--width``) layers with ReLU,
  about 25 M float32 parameters (~100 MB of weights, ~300 MB per checkpoint with the Adam moments);
* ``mlp``: the reference MLP 784 -> 256 -> 128 -> 64 -> 10 (dropout 0.3), built by kiln's model
  catalog exactly as ``configs/mnist_mlp.yaml`` builds it.

Every save goes through ``kiln.checkpoint.CheckpointManager`` into a fresh directory on the same
disk as the repository (``--dir``; the default temp dir is checked and reported), with the state
the trainer really saves (``model.state_dict()``, ``optimizer.state_dict()`` and a trainer state
with every RNG), so each save copies to CPU, serialises, hashes the files into the manifest,
fsyncs, renames and prunes the previous checkpoint. The *stall* is the wall time the calling
(training) thread spends inside ``manager.save(...)``. Each round measures, in alternating order:

* ``sync``: ``async_save=False``; the stall is the whole save;
* ``async, idle``: ``async_save=True``, then the thread just waits for the background write. The
  stall is the CPU copy and the submit; the write time is measured inside the worker thread;
* ``async, training on``: the same save, but the thread keeps taking real training steps (batch
  ``--batch``) until the write is committed. Reported: the write time under that load, how much
  slower the steps taken during the write were than steps taken with no write running (same
  round), and the *net cost*: stall plus the extra step time, i.e. what the training thread
  really lost to the save;
* ``async, back-to-back``: an asynchronous save immediately followed by another; the stall of the
  second one, which must wait for the first to be committed (``save`` waits for a pending save).

The write time is taken by a ``CheckpointManager`` subclass that times ``_write`` (a private
method: if it is ever renamed, no time is recorded and the benchmark stops with an error rather
than print nothing). For the MLP the report also gives one epoch of MNIST-sized training (54,000
samples, batch 128, Adam: the reference config) timed by a hand-written loop, and the sync save
cost as a fraction of it. Medians with (min-max) over the rounds; ratios are medians of
per-round ratios, measured side by side. A busy neighbour on a small machine changes everything,
so before each measurement the benchmark waits (up to ``--max-wait`` s) until other processes use
fewer than ``--busy`` cores, and it reports, from ``/proc/stat``, the most they used during each
round (*others' CPU*) and how many rounds stayed under ``--busy`` (*quiet rounds*).

    .venv/bin/python bench/checkpoint.py                        # both models, defaults below
    .venv/bin/python bench/checkpoint.py --models mlp --rounds-mlp 15
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from typing_extensions import override

from kiln.checkpoint import CheckpointManager
from kiln.config import load_config
from kiln.data.spec import DataSpec
from kiln.models.build import build_model
from kiln.train.rng import capture_rng

MODES = ("sync", "async, idle", "async, training on", "async, back-to-back")
MNIST_SPEC = DataSpec(name="mnist", task="classification", input_shape=(1, 28, 28), num_classes=10)
MNIST_TRAIN = 54_000  # 60,000 minus the reference config's 10 % validation split
MNIST_BATCH = 128  # configs/mnist_base.yaml


def log(message: str) -> None:
    """Progress notes go to stderr; stdout carries only the markdown report."""
    print(message, file=sys.stderr, flush=True)


class TimedManager(CheckpointManager):
    """A CheckpointManager that records the (start, end) ``perf_counter`` of every write.

    ``_write`` is everything after the CPU copy: serialise, hash into the manifest, fsync, rename,
    prune. It runs on the caller's thread when synchronous and on the worker thread otherwise.
    """

    def __init__(self, directory: Path, async_save: bool) -> None:
        super().__init__(directory, keep_best_n=1, keep_last_n=1, mode="min", async_save=async_save)
        self.writes: list[tuple[float, float]] = []

    @override
    def _write(self, *args: Any, **kwargs: Any) -> Path:
        started = time.perf_counter()
        try:
            return super()._write(*args, **kwargs)
        finally:
            self.writes.append((started, time.perf_counter()))

    def last_write(self, expected: int) -> float:
        """Seconds of the newest write, after checking that ``expected`` writes were recorded."""
        if len(self.writes) != expected:
            raise RuntimeError(
                f"recorded {len(self.writes)} writes, expected {expected}: has "
                "CheckpointManager._write been renamed? Update TimedManager."
            )
        start, end = self.writes[-1]
        return end - start


class Workload:
    """A model, its Adam optimizer (state initialised by one step) and a fixed random batch."""

    def __init__(self, name: str, model: nn.Module, input_shape: tuple[int, ...], classes: int, batch: int) -> None:
        self.name = name
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.inputs = torch.randn(batch, *input_shape)
        self.targets = torch.randint(0, classes, (batch,))
        self.criterion = nn.CrossEntropyLoss()
        self.step_count = 0
        self.step()  # creates Adam's exp_avg / exp_avg_sq: the optimizer state is now 2x the weights

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def step(self) -> None:
        """One real training step: forward, loss, backward, Adam step, zero_grad."""
        self.model.train()
        loss = self.criterion(self.model(self.inputs), self.targets)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1

    def save(self, manager: CheckpointManager) -> float:
        """Seconds the calling thread spends in ``manager.save`` with the state the trainer saves."""
        step = self.step_count
        trainer_state = {
            "counters": {"epoch": 0, "global_step": step, "batch_in_epoch": 0},
            "rng": capture_rng(),
            "callbacks": {},
            "meter": None,
            "grads": {},  # the trainer zeroes gradients right after each optimizer step
        }
        meta = {"epoch": 0, "global_step": step, "batch_in_epoch": 0, "monitor_value": None}
        started = time.perf_counter()
        manager.save(self.model.state_dict(), self.optimizer.state_dict(), trainer_state, meta)
        stall = time.perf_counter() - started
        self.step_count += 1  # the next save gets a new name, as after a real step
        return stall


def build_workload(name: str, args: argparse.Namespace) -> Workload:
    """The ``big`` synthetic network or the reference ``mlp`` (through kiln's model catalog)."""
    torch.manual_seed(0)
    if name == "big":
        layers: list[nn.Module] = []
        for _ in range(args.layers):
            layers += [nn.Linear(args.width, args.width), nn.ReLU()]
        return Workload(name, nn.Sequential(*layers[:-1]), (args.width,), args.width, args.batch)
    cfg = load_config(None, ["model.name=mlp", "model.hidden=[256,128,64]", "model.dropout=0.3"])
    return Workload(name, build_model(cfg.model, MNIST_SPEC), MNIST_SPEC.input_shape, 10, MNIST_BATCH)


class OtherLoad:
    """Average cores used by *other* processes, from ``/proc/stat`` minus this process's own time."""

    def __init__(self) -> None:
        self.available = Path("/proc/stat").is_file()
        self.tick = os.sysconf("SC_CLK_TCK") if self.available else 100
        self.mark = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        busy = 0.0
        if self.available:
            with open("/proc/stat", encoding="ascii") as f:
                ticks = [int(x) for x in f.readline().split()[1:9]]
            busy = (sum(ticks) - ticks[3] - ticks[4]) / self.tick  # minus idle and iowait
        own = os.times()
        return time.perf_counter(), busy, own.user + own.system

    def since_mark(self) -> float:
        """Cores others used since the last call (or construction); starts a new interval."""
        now, before = self._sample(), self.mark
        self.mark = now
        wall = now[0] - before[0]
        return max(0.0, (now[1] - before[1]) - (now[2] - before[2])) / wall if wall > 0 else 0.0

    def wait_until_quiet(self, busy: float, max_wait: float) -> None:
        """Sleep in half-second looks until others use under ``busy`` cores (at most ``max_wait`` s)."""
        started = time.perf_counter()
        while self.available and time.perf_counter() - started < max_wait:
            self.since_mark()
            time.sleep(0.5)
            if self.since_mark() < busy:
                return


@dataclass
class Result:
    """Every figure of one model, round by round."""

    name: str
    parameters: int
    disk_bytes: dict[str, int] = field(default_factory=dict)
    stall: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    write: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    step_idle: list[float] = field(default_factory=list)  # per round: median step, no write running
    step_during: list[float] = field(default_factory=list)  # per round: median step during a write
    steps_during: list[int] = field(default_factory=list)  # per round: steps taken during the write
    net_cost: list[float] = field(default_factory=list)  # per round: stall + extra step time
    others: list[float] = field(default_factory=list)  # per round: cores used by other processes
    epoch_seconds: list[float] = field(default_factory=list)  # mlp only


def timed_steps(work: Workload, n: int) -> list[float]:
    """Seconds of each of ``n`` training steps."""
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        work.step()
        seconds.append(time.perf_counter() - started)
    return seconds


def run_round(
    work: Workload, sync: TimedManager, asyn: TimedManager, order: Sequence[str], result: Result,
    load: OtherLoad, args: argparse.Namespace,
) -> None:
    """One measurement of every mode, in ``order``, each after waiting for a quiet machine."""
    others = []
    for mode in order:
        load.wait_until_quiet(args.busy, args.max_wait)
        measure(mode, work, sync, asyn, result, args)
        others.append(load.since_mark())
    result.others.append(max(others))


def measure(
    mode: str, work: Workload, sync: TimedManager, asyn: TimedManager, result: Result,
    args: argparse.Namespace,
) -> None:
    """One measurement of ``mode``; appends to ``result``."""
    if mode == "sync":
        expected = len(sync.writes) + 1
        result.stall[mode].append(work.save(sync))
        result.write[mode].append(sync.last_write(expected))
        timed_steps(work, 1)
    elif mode == "async, idle":
        expected = len(asyn.writes) + 1
        result.stall[mode].append(work.save(asyn))
        asyn.wait()
        result.write[mode].append(asyn.last_write(expected))
    elif mode == "async, training on":
        idle = statistics.median(timed_steps(work, args.steps))
        expected = len(asyn.writes) + 1
        stall = work.save(asyn)
        during: list[float] = []
        while len(asyn.writes) < expected:  # the worker appends when the write is committed
            during += timed_steps(work, 1)
        wait_started = time.perf_counter()
        asyn.wait()  # already done: raises here if the write failed
        stall += time.perf_counter() - wait_started
        result.stall[mode].append(stall)
        result.write[mode].append(asyn.last_write(expected))
        result.step_idle.append(idle)
        result.steps_during.append(len(during))
        # The last step usually began before the write ended: count it at its idle price.
        overlapped = during[:-1] if len(during) > 1 else during
        result.step_during.append(statistics.median(overlapped) if overlapped else idle)
        result.net_cost.append(stall + sum(s - idle for s in overlapped))
    else:  # back-to-back: the second save waits for the first one's write
        expected = len(asyn.writes) + 2
        work.save(asyn)
        result.stall[mode].append(work.save(asyn))
        asyn.wait()
        result.write[mode].append(asyn.last_write(expected))
        timed_steps(work, 1)


def mnist_sized_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs and labels the size of MNIST's training split (made once, ~170 MB)."""
    return torch.randn(MNIST_TRAIN, *MNIST_SPEC.input_shape), torch.randint(0, 10, (MNIST_TRAIN,))


def mlp_epoch(work: Workload, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Seconds of one shuffled epoch over ``data`` (batch 128) with the hand-written loop."""
    inputs, targets = data
    order = torch.randperm(MNIST_TRAIN)
    work.model.train()
    started = time.perf_counter()
    for i in range(0, MNIST_TRAIN, MNIST_BATCH):
        index = order[i : i + MNIST_BATCH]
        loss = work.criterion(work.model(inputs[index]), targets[index])
        loss.backward()
        work.optimizer.step()
        work.optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def bench(name: str, rounds: int, args: argparse.Namespace, root: Path) -> Result:
    """Every mode ``rounds`` times for one model; the order rotates each round."""
    work = build_workload(name, args)
    result = Result(name, work.parameters)
    data = mnist_sized_data() if name == "mlp" else None
    load = OtherLoad()
    with tempfile.TemporaryDirectory(prefix=f"kiln-ckpt-{name}-", dir=root) as tmp:
        sync = TimedManager(Path(tmp) / "sync", async_save=False)
        asyn = TimedManager(Path(tmp) / "async", async_save=True)
        # Warm-up (allocator, page cache, first-call costs), then the size of one checkpoint.
        work.save(sync)
        work.save(asyn)
        asyn.wait()
        (newest,) = (p for p in sync.directory.iterdir() if p.is_dir())
        result.disk_bytes = {f.name: f.stat().st_size for f in sorted(newest.iterdir())}
        timed_steps(work, 2)
        for r in range(rounds):
            shift = r % len(MODES)
            order = MODES[shift:] + MODES[:shift]
            run_round(work, sync, asyn, order, result, load, args)
            if data is not None:
                load.wait_until_quiet(args.busy, args.max_wait)
                result.epoch_seconds.append(mlp_epoch(work, data))
            log(
                f"{name} round {r + 1}/{rounds}: "
                + "  ".join(f"{m} {result.stall[m][-1] * 1e3:.1f} ms" for m in MODES)
                + f"  (write {result.write['async, idle'][-1] * 1e3:.1f} ms; "
                f"others used up to {result.others[-1]:.2f} cores)"
            )
        sync.close()
        asyn.close()
    return result


def spread(values: Sequence[float], scale: float = 1e3, digits: int = 1) -> str:
    """``median (min-max)`` of ``values * scale``."""
    return (
        f"{statistics.median(values) * scale:.{digits}f} "
        f"({min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f})"
    )


def machine() -> str:
    """CPU model, cores, RAM, torch and Python: the line every figure needs beside it."""
    model = platform.processor() or "unknown CPU"
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {ram:.0f} GiB RAM; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def report(results: Sequence[Result], args: argparse.Namespace, root: Path) -> str:
    """The markdown to paste into bench/README.md."""
    lines = [
        f"{datetime.now():%Y-%m-%d %H:%M}; {machine()}; checkpoints written to {root} "
        f"({shutil.disk_usage(root).free / 2**30:.0f} GiB free)",
        "",
        "| model | parameters | one checkpoint on disk |",
        "|---|---:|---|",
    ]
    for r in results:
        files = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in r.disk_bytes.items() if v >= 1e5)
        lines.append(
            f"| {r.name} | {r.parameters:,} | {sum(r.disk_bytes.values()) / 1e6:.1f} MB ({files} MB) |"
        )
    lines += [
        "",
        "Training-thread stall per save, ms, median (min-max) over the rounds; *write* is the "
        "serialise + hash + fsync + rename + prune part (on the caller's thread when sync, on the "
        "worker thread when async).",
        "",
        "| model | rounds | mode | stall, ms | write, ms | stall / sync stall (per round, median) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in results:
        for mode in MODES:
            ratio = statistics.median(a / s for a, s in zip(r.stall[mode], r.stall["sync"], strict=True))
            lines.append(
                f"| {r.name} | {len(r.stall[mode])} | {mode} | {spread(r.stall[mode])} "
                f"| {spread(r.write[mode])} | {'-' if mode == 'sync' else f'{ratio:.3f}'} |"
            )
    lines += [
        "",
        "Async with training going on: steps taken while the write ran, against steps with no "
        "write (same round); the net cost is the stall plus the extra step time, i.e. what the "
        "training thread lost. Medians (min-max).",
        "",
        "| model | batch | step, no write, ms | step during write, ms | steps during write "
        "| net cost, ms | net cost / sync stall | others' CPU, cores | quiet rounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        batch = args.batch if r.name == "big" else MNIST_BATCH
        ratio = statistics.median(c / s for c, s in zip(r.net_cost, r.stall["sync"], strict=True))
        lines.append(
            f"| {r.name} | {batch} | {spread(r.step_idle, digits=2)} | {spread(r.step_during, digits=2)} "
            f"| {statistics.median(r.steps_during):.0f} ({min(r.steps_during)}-{max(r.steps_during)}) "
            f"| {spread(r.net_cost)} | {ratio:.3f} | {spread(r.others, 1, 2)} "
            f"| {sum(o < args.busy for o in r.others)} of {len(r.others)} |"
        )
    for r in results:
        if r.epoch_seconds:
            epoch = statistics.median(r.epoch_seconds)
            lines += [
                "",
                f"{r.name}: one MNIST-sized epoch ({MNIST_TRAIN:,} samples, batch {MNIST_BATCH}, Adam, "
                f"hand-written loop) took {spread(r.epoch_seconds, 1, 2)} s; a sync save is "
                f"{statistics.median(r.stall['sync']) / epoch:.2%} of it, an async one "
                f"{statistics.median(r.stall['async, idle']) / epoch:.2%}.",
            ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", default="big,mlp", help="comma-separated: big, mlp")
    parser.add_argument("--rounds-big", type=int, default=5, help="rounds for the ~100 MB model")
    parser.add_argument("--rounds-mlp", type=int, default=10, help="rounds for the reference MLP")
    parser.add_argument("--width", type=int, default=2048, help="big: width of each Linear layer")
    parser.add_argument("--layers", type=int, default=6, help="big: number of Linear layers")
    parser.add_argument("--batch", type=int, default=32, help="big: training batch size")
    parser.add_argument("--steps", type=int, default=5,
                        help="training steps per round timed with no write running")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write checkpoints (default: the temp dir; it must be a real disk)")
    parser.add_argument("--busy", type=float, default=0.25,
                        help="before each measurement, wait until other processes use fewer cores")
    parser.add_argument("--max-wait", type=float, default=20.0,
                        help="seconds to wait for a quiet machine before each measurement")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in ("big", "mlp")]
    if unknown or not args.models:
        parser.error(f"--models: unknown {unknown}; choose from big, mlp")
    if min(args.rounds_big, args.rounds_mlp, args.steps) < 1:
        parser.error("--rounds-big, --rounds-mlp and --steps must be at least 1")
    return args


def checked_root(requested: Path | None) -> Path:
    """The directory to write into; refuses a RAM-backed file system, where fsync costs nothing."""
    root = (requested or Path(tempfile.gettempdir())).resolve()
    root.mkdir(parents=True, exist_ok=True)
    fs_type = ""
    if Path("/proc/mounts").is_file():
        best = ""
        for line in Path("/proc/mounts").read_text(encoding="utf-8").splitlines():
            _, mount, kind, *_ = line.split()
            if (root == Path(mount) or Path(mount) in root.parents) and len(mount) > len(best):
                best, fs_type = mount, kind
    if fs_type in ("tmpfs", "ramfs"):
        raise SystemExit(f"{root} is on {fs_type}: pass --dir on a real disk (e.g. next to the repository)")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    root = checked_root(args.dir)
    rounds = {"big": args.rounds_big, "mlp": args.rounds_mlp}
    results = [bench(name, rounds[name], args, root) for name in args.models]
    print(report(results, args, root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
