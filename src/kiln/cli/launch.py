"""``kiln train ... --nproc N`` (and ``kiln resume``): run the same command in N worker processes
through torchrun.

The launcher is torch's own elastic agent (``torch.distributed.run``, i.e. ``torchrun``), run in
this process by ``kiln.distributed.launch``; the workers are ``python -m kiln <verb> ...`` without
the launch flags. It is the same as typing::

    python -m torch.distributed.run --nproc-per-node N --rdzv-backend c10d \\
        --rdzv-endpoint localhost:0 --rdzv-id <uuid> -m kiln train ...

When a worker fails, torchrun stops the others; the launcher then raises a DistributedError naming
the rank that failed first and its error, and how to resume.
"""

from __future__ import annotations

import argparse
import signal
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kiln.distributed.launch import describe
from kiln.errors import DistributedError, UsageError


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """The flags of a verb that can train on several processes."""
    group = parser.add_argument_group("distributed (torchrun)")
    group.add_argument("--nproc", type=_nproc, metavar="N|auto",
                       help="train with N processes per machine (DDP; gloo on CPU, NCCL on GPUs); "
                            "auto: one per visible GPU (one process, no DDP, with fewer than 2 GPUs)")
    group.add_argument("--max-restarts", type=int, default=0, metavar="M",
                       help="with --nproc: restart the workers up to M times after a failure, "
                            "resuming from the newest checkpoint")
    group.add_argument("--nnodes", default="1", help="with --nproc: number of machines (or MIN:MAX)")
    group.add_argument("--rdzv-endpoint", help="with --nproc and --nnodes>1: HOST:PORT every node reaches")
    group.add_argument("--rdzv-id", help="with --nnodes>1: the same job id on every node")


def _nproc(value: str) -> int | str:
    """``--nproc``: a number (checked by :func:`torchrun_args`) or ``auto``."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {value!r}") from None


def wants_launch(args: argparse.Namespace, device: str = "auto") -> bool:
    """True in the user's process of ``--nproc N``; False inside a torchrun worker.

    ``--nproc auto`` is settled here, once, into ``args.nproc`` (a number, or None: train in this
    process), saying what it chose; ``device`` is the config's ``run.device``."""
    from kiln.distributed.env import launch_env

    if getattr(args, "nproc", None) is None or launch_env().launched:
        return False
    if args.nproc == "auto":
        import torch

        args.nproc, message = resolve_auto_nproc(torch.cuda.device_count(), device)
        print(message, flush=True)
    return args.nproc is not None


def resolve_auto_nproc(gpus: int, device: str = "auto") -> tuple[int | None, str]:
    """``--nproc auto`` with ``gpus`` visible CUDA devices: one process per GPU (NCCL, the backend
    ``distributed.backend: auto`` picks on CUDA), or None (this one process) with fewer than 2.
    A ``device`` other than auto or cuda (``run.device``) uses no GPU, however many there are."""
    if device not in ("auto", "cuda"):
        gpus = 0
    if gpus >= 2:
        return gpus, f"--nproc auto: {gpus} CUDA GPUs visible, so {gpus} processes, one per GPU (NCCL)"
    if gpus == 1:
        return None, "--nproc auto: 1 CUDA GPU visible, so the run trains in this one process (no DDP)"
    why = f"run.device is {device}" if device not in ("auto", "cuda") else "no CUDA GPU is visible"
    return None, (f"--nproc auto: {why}, so the run falls back to this one process on the CPU "
                  "(--nproc N trains on N CPU processes with gloo)")


def torchrun_args(args: argparse.Namespace, worker_argv: Sequence[str], run_id: str) -> list[str]:
    """The argument list of ``torch.distributed.run`` for these launch flags."""
    if args.nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {args.nproc}")
    if args.max_restarts < 0:
        raise UsageError(f"--max-restarts must be 0 or more, got {args.max_restarts}")
    multi_node = str(args.nnodes) != "1"
    if multi_node and not args.rdzv_endpoint:
        raise UsageError(
            f"--nnodes {args.nnodes} needs --rdzv-endpoint HOST:PORT (a port on the first node that "
            "every node can reach) and the same --rdzv-id on every node"
        )
    endpoint = args.rdzv_endpoint or "localhost:0"  # port 0: a free one, as torchrun --standalone
    return [
        "--nnodes", str(args.nnodes), "--nproc-per-node", str(args.nproc),
        "--max-restarts", str(args.max_restarts),
        "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id,
        "-m", "kiln", *worker_argv,
    ]


def launch(
    args: argparse.Namespace,
    worker_argv: Sequence[str],
    find_run_dir: Callable[[str], Path | None],
) -> int:
    """Run ``kiln <worker_argv>`` on ``args.nproc`` processes; 0 when every rank succeeded.

    ``find_run_dir(run_id)`` tells, after the fact, which run directory the job wrote (for the
    resume hint of a failure).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from kiln.distributed.launch import run_torchrun

    run_id = args.rdzv_id or uuid.uuid4().hex[:12]
    argv = torchrun_args(args, worker_argv, run_id)
    print("launching: python -m torch.distributed.run " + " ".join(argv), flush=True)
    try:
        run_torchrun(argv)
    except ChildFailedError as exc:
        raise DistributedError(failure_message(exc, args, worker_argv, find_run_dir(run_id))) from None
    except SignalException as exc:  # SIGTERM/SIGINT to the launcher: torchrun passed it on
        run_dir = find_run_dir(run_id)
        where = f"; resume with: kiln resume {run_dir} --nproc {args.nproc}" if run_dir is not None else ""
        print(f"{exc.sigval.name} received: the workers were stopped{where}", file=sys.stderr)
        return 130 if exc.sigval == signal.SIGINT else 143
    return 0


def failure_message(exc: Any, args: argparse.Namespace, worker_argv: Sequence[str], run_dir: Path | None) -> str:
    """Which rank failed first and why, the other failures, and how to resume."""
    rank, first = exc.get_first_failure()
    lines = [f"distributed training failed: rank {rank} (local rank {first.local_rank}, pid "
             f"{first.pid}) {describe(first)}"]
    others = [f"rank {r}: {describe(f)}" for r, f in sorted(exc.failures.items()) if r != rank]
    if others:
        lines.append("then the other ranks stopped: " + "; ".join(others))
    restarts = f" after {args.max_restarts} restart(s)" if args.max_restarts else ""
    lines.append(f"torchrun stopped the job{restarts}.")
    if run_dir is not None and (run_dir / "checkpoints").is_dir():
        lines.append(f"resume with: kiln resume {run_dir} --nproc {args.nproc}")
    elif worker_argv and worker_argv[0] == "resume" and len(worker_argv) > 1:
        lines.append(f"resume with: kiln resume {worker_argv[1]} --nproc {args.nproc}")
    return "\n".join(lines)
