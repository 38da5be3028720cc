"""``workers: N``: N worker processes on this machine, each running :func:`kiln.sweep.loop.run_worker`.

Each worker is ``python -m kiln sweep --worker SWEEP_DIR --worker-index K``: a fresh interpreter
(no fork of a process holding torch threads or database connections), reading ``sweep.json``.
They share the study through its storage, exactly as workers on other machines do. A worker
planned onto GPUs (:mod:`kiln.sweep.gpus`) gets its own ``CUDA_VISIBLE_DEVICES``.

Workers run in their own session, so a Ctrl-C in the terminal reaches only this process, which
passes exactly one SIGINT on to each worker: every running trial checkpoints and is marked
interrupted. (Had the terminal signalled them too, each would get two and stop without a
checkpoint.) A second Ctrl-C is passed on as well and stops them at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from kiln.sweep.context import SweepContext
from kiln.sweep.gpus import WorkerPlan, describe


@dataclass(frozen=True)
class WorkersResult:
    exit_codes: list[int]  # one per worker; negative: killed by that signal
    signum: int | None  # the signal that stopped the sweep, if any


def worker_command(ctx: SweepContext, index: int, threads: int) -> list[str]:
    return [sys.executable, "-m", "kiln", "sweep", "--worker", str(ctx.sweep_dir),
            "--worker-index", str(index), "--worker-threads", str(threads)]


def spawn(command: Sequence[str], extra_env: Mapping[str, str], **popen: Any) -> subprocess.Popen[Any]:
    """Start one worker in a session of its own, with ``extra_env`` over this process's environment."""
    env = {**os.environ, **extra_env} if extra_env else None
    return subprocess.Popen(list(command), start_new_session=True, env=env, **popen)


def run_workers(ctx: SweepContext, plan: WorkerPlan, echo: Callable[[str], None] = print) -> WorkersResult:
    """Start the planned workers, pass signals on to them, and wait until every one has exited."""
    count = plan.count
    # N workers with torch's default (one thread per core) each would oversubscribe the CPU.
    threads = max(1, (os.cpu_count() or 1) // count)
    processes = [spawn(worker_command(ctx, i, threads), plan.envs[i]) for i in range(count)]
    echo(f"started {count} workers (pids {', '.join(str(p.pid) for p in processes)}), "
         f"{threads} torch thread(s) each")
    for line in describe(plan):
        echo(f"  {line}")
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, forward)
    try:
        codes = [process.wait() for process in processes]
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    for index, code in enumerate(codes):
        if code < 0:
            echo(f"worker {index} was killed by {signal.Signals(-code).name}; its trial is failed after "
                 f"{ctx.spec.heartbeat.grace_period} s without heartbeats and queued again")
        elif code not in (0, 130, 143):
            echo(f"worker {index} exited with code {code} (its error is printed above)")
    return WorkersResult(codes, received[0] if received else None)
