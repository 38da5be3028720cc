"""A rank SIGKILLed mid-epoch: the job stops with a message naming it, and the run resumes
(by hand with `kiln resume`, on another number of processes, or by torchrun's own restart)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT
from tests.distributed.conftest import env_for, kiln, overrides
from tests.distributed.test_ddp import epoch_metrics, final_weights

# ~41 steps of 16 samples per rank and epoch, each sleeping 30 ms: a few seconds of training in
# which a mid-epoch checkpoint (every 10 steps) shows when to strike.
SLOW = (
    "model.target=tests.distributed.slow:SlowMLP", "training.epochs=3", "training.batch_size=16",
    "checkpoint.every_n_steps=10", "checkpoint.keep_last_n=3",
)


def start(output_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kiln", "train", *overrides(output_dir, *SLOW), "--nproc", "2", "--quiet", *extra],
        cwd=ROOT, env=env_for(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker with RANK=rank among the launcher's children."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def kill_rank_mid_epoch(process: subprocess.Popen[str], output_dir: Path, rank: int = 1) -> Path:
    """Once a mid-epoch checkpoint is committed, SIGKILL ``rank``; returns the run directory."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        mid_epoch = [p for p in output_dir.glob("*/checkpoints/*-batch*") if not p.name.endswith(".tmp")]
        pid = rank_pid(process.pid, rank)
        if mid_epoch and pid is not None:
            os.kill(pid, signal.SIGKILL)
            return mid_epoch[0].parent.parent
        time.sleep(0.02)
    process.kill()
    out, err = process.communicate()
    raise AssertionError(f"no mid-epoch checkpoint to kill at (exit {process.returncode}):\n{out}\n{err}")


@pytest.mark.slow
def test_killed_rank_stops_the_job_by_name_and_kiln_resume_completes_it(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    job = start(out)
    run_dir = kill_rank_mid_epoch(job, out)
    stdout, stderr = job.communicate(timeout=120)
    assert job.returncode == 1, stdout + stderr
    message = stderr[stderr.index("error: distributed training failed"):]
    assert "rank 1 (local rank 1" in message and "SIGKILL" in message, message
    assert f"resume with: kiln resume {run_dir.resolve()} --nproc 2" in message

    # Resume on one process: a different world size is allowed, with a warning.
    resumed = kiln("resume", str(run_dir), "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "checkpointed with 2 process(es) on 1" in resumed.stderr
    assert "data order" in resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_trained"] == 3
    assert summary["batch"]["world_size"] == 1
    assert [m["epoch"] for m in epoch_metrics(run_dir)] == [1, 2, 3]


@pytest.mark.slow
def test_torchrun_restart_resumes_exactly(tmp_path: Path) -> None:
    """--max-restarts 1: the restarted workers find the run directory and its newest checkpoint,
    and end bit for bit where an uninterrupted 2-process run ends (dropout included)."""
    out = tmp_path / "restarted"
    job = start(out, "--max-restarts", "1")
    run_dir = kill_rank_mid_epoch(job, out)
    stdout, stderr = job.communicate(timeout=240)
    assert job.returncode == 0, stdout + stderr
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == [run_dir.name]
    events = [json.loads(line) for line in (run_dir / "logs/events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("resumed") == 1
    assert [m["epoch"] for m in epoch_metrics(run_dir)] == [1, 2, 3]

    clean = tmp_path / "clean"
    uninterrupted = kiln("train", *overrides(clean, *SLOW), "--nproc", "2", "--quiet")
    assert uninterrupted.returncode == 0, uninterrupted.stdout + uninterrupted.stderr
    (clean_dir,) = [p for p in clean.iterdir() if not p.name.startswith(".")]
    a, b = final_weights(run_dir), final_weights(clean_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigterm_stops_every_rank_after_the_same_step(tmp_path: Path) -> None:
    """SIGTERM to the launcher: torchrun passes it on, the ranks agree on one step, rank 0 writes
    one checkpoint, the job exits 143, and `kiln resume --nproc 2` finishes it."""
    out, reports = tmp_path / "runs", tmp_path / "batches"
    reports.mkdir()
    job = subprocess.Popen(
        [sys.executable, "-m", "kiln", "train", *overrides(out, *SLOW), "--nproc", "2", "--quiet",
         "model.target=tests.distributed.counting:CountingSlowMLP"],
        cwd=ROOT, env={**env_for(), "KILN_BATCHES_DIR": str(reports)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    while not list(out.glob("*/checkpoints/*-batch*")) and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.02)
    job.send_signal(signal.SIGTERM)
    stdout, stderr = job.communicate(timeout=120)
    assert job.returncode == 143, stdout + stderr
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    checkpoint = Path(summary["last_checkpoint"])
    assert checkpoint.is_dir()
    step = json.loads((checkpoint / "meta.json").read_text())["global_step"]
    assert summary["global_step"] == step
    # rank 0 alone prints how it stopped; each rank reports the batches it trained: the same step
    (stopped,) = [line for line in stderr.splitlines() if line.startswith("SIGTERM received: stopped at")]
    assert f"(step {step}); checkpoint: {checkpoint}" in stopped
    ranks = {p.name: int(p.read_text()) for p in reports.iterdir()}
    assert ranks == {"rank0.txt": step, "rank1.txt": step}, (ranks, stderr)
    assert f"kiln resume {run_dir} --nproc 2" in stderr

    resumed = kiln("resume", str(run_dir), "--nproc", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "data order" not in resumed.stderr  # same world size: an exact resume, no warning
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
