"""Preemption-proof by default, with real processes and real signals: a run killed before its first
checkpoint resumes in its own directory, and one fixed command (``kiln train --run-dir DIR``) run
again and again under SIGKILL and SIGTERM, as a cluster requeues a job, ends bit for bit like a
run that was never stopped, then exits 0 at once."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from kiln.cli.main import main
from kiln.runs import read_summary
from kiln.testing.tiny import TINY_OVERRIDES
from kiln.tracking import read_events
from tests.conftest import ROOT, run_cli
from tests.distributed.conftest import env_for
from tests.distributed.test_kill import rank_pid

TIMING = ("epoch_time", "samples_per_sec")
SAFETY = 240.0  # only keeps a wrong answer from hanging the suite; a right one never comes near it
# A model that sleeps 30 ms per training batch (tests.distributed.slow): 21 batches an epoch, so a
# kill placed by progress lands mid-epoch on a fast machine as on a slow one.
SLOW = ("model.target=tests.distributed.slow:SlowMLP", "tracking.system_metrics=false")


def kiln_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kiln", *args]


def start(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(kiln_cmd(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(process: subprocess.Popen[str], ready: Callable[[], bool]) -> bool:
    """Poll until ``ready()``; False when the process ended first."""
    deadline = time.monotonic() + SAFETY
    while not ready():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.002)
    return True


def committed(run_dir: Path) -> list[Path]:
    folder = run_dir / "checkpoints"
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.endswith(".tmp")] if folder.is_dir() else []


def newest_step(run_dir: Path) -> int:
    return max((int(p.name.split("-step")[1][:8]) for p in committed(run_dir)), default=0)


def epoch_records(run_dir: Path) -> list[dict[str, Any]]:
    records = read_events(run_dir / "logs/events.jsonl")
    found = [r["metrics"] for r in records if r["event"] == "metrics" and r["scope"] == "epoch"]
    return [{k: v for k, v in m.items() if k not in TIMING} for m in found]


def csv_epochs(run_dir: Path) -> list[int]:
    with (run_dir / "logs/training_log.csv").open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def assert_identical(a: Path, b: Path) -> None:
    """The same weights, byte for byte, the same test metrics and the same epoch history."""
    assert (a / "models/model.safetensors").read_bytes() == (b / "models/model.safetensors").read_bytes()
    assert read_summary(a).test == read_summary(b).test
    assert epoch_records(a) == epoch_records(b)


def assert_one_history(run_dir: Path, epochs: int) -> None:
    """Every log holds each epoch and each logged step once."""
    assert [m["epoch"] for m in epoch_records(run_dir)] == list(range(1, epochs + 1))
    assert csv_epochs(run_dir) == list(range(1, epochs + 1))
    records = read_events(run_dir / "logs/events.jsonl")
    steps = [r["step"] for r in records if r["event"] == "metrics" and r["scope"] == "step"]
    assert steps == sorted(set(steps))


# -- a SIGKILL during start-up, then `kiln resume` ---------------------------------------------

# The first checkpoint comes only with the last epoch: after epoch 1 there is none for 1.3 s.
STARTUP = (*TINY_OVERRIDES, *SLOW, "training.epochs=3", "checkpoint.every_n_epochs=3",
           "tracking.log_every_n_steps=5", "tracking.backends=[csv]")


@pytest.mark.slow
def test_sigkill_before_the_first_checkpoint_then_resume_ends_identical_in_the_same_directory(
    tmp_path: Path,
) -> None:
    reference = run_cli("train", *STARTUP, f"run.output_dir={tmp_path / 'reference'}", "--quiet")
    assert reference.returncode == 0, reference.stderr
    (straight,) = [p for p in (tmp_path / "reference").iterdir() if p.is_dir()]

    output = tmp_path / "killed"
    process = start("train", *STARTUP, f"run.output_dir={output}", "--quiet")
    runs = lambda: [p.parent for p in output.glob("*/config.yaml")]  # noqa: E731
    csv_row = lambda: (runs()[0] / "logs/training_log.csv").exists() and csv_epochs(runs()[0]) == [1]  # noqa: E731
    assert wait_for(process, lambda: bool(runs()) and csv_row())
    process.send_signal(signal.SIGSTOP)  # frozen mid-epoch 2: what is on disk now is what the kill leaves
    (run_dir,) = runs()
    assert not committed(run_dir), "the first checkpoint comes with epoch 3"
    process.kill()
    process.communicate()
    assert csv_epochs(run_dir) == [1]  # the CSV had its row for epoch 1: not to be there twice

    resumed = run_cli("resume", str(run_dir), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert f"restarting {run_dir} from step 0: it stopped before its first checkpoint" in resumed.stdout
    assert "Traceback" not in resumed.stderr
    assert [p.name for p in output.iterdir() if p.is_dir()] == [run_dir.name]  # the same directory
    assert_identical(straight, run_dir)
    assert_one_history(run_dir, 3)
    records = read_events(run_dir / "logs/events.jsonl")
    assert records[0]["event"] == "restarted" and records[0]["reason"] == "no checkpoint"
    assert records[0]["reached_step"] >= 21 and records[0]["previous_status"] is None  # killed: no summary
    assert [r["event"] for r in records].count("fit_start") == 1


# -- one fixed command, requeued until it exits 0 ---------------------------------------------

FIXED = (*TINY_OVERRIDES, *SLOW, "training.epochs=5", "checkpoint.every_n_steps=10", "checkpoint.keep_last_n=2",
         "tracking.backends=[csv]")


def fixed_command(run_dir: Path, *extra: str) -> list[str]:
    """The one command of the job: the run in ``run_dir`` (its siblings hold nothing of it)."""
    return ["train", *FIXED, f"run.output_dir={run_dir.parent / 'elsewhere'}", *extra,
            "--run-dir", str(run_dir), "--quiet"]


def config_written(run_dir: Path) -> Callable[[], bool]:
    """Whether this attempt has written config.yaml (a new run, or a resumed one rewriting it)."""
    path = run_dir / "config.yaml"
    before = path.stat().st_mtime_ns if path.exists() else None
    return lambda: path.exists() and path.stat().st_mtime_ns != before


@pytest.mark.slow
def test_the_fixed_run_dir_command_requeued_under_random_kills_ends_identical_then_exits_at_once(
    tmp_path: Path,
) -> None:
    # The same environment as the attempts (start(): one intra-op thread): two threads sum floats
    # in another order, so a reference run with the machine's default would differ in the last bits.
    reference = run_cli(*fixed_command(tmp_path / "reference"), env={"OMP_NUM_THREADS": "1"})
    assert reference.returncode == 0, reference.stderr
    assert f"starting a new run in {tmp_path / 'reference'}" in reference.stdout

    run_dir, rng = tmp_path / "job", random.Random(19)
    # Where each attempt is stopped, like a cluster that preempts the job: during start-up (the
    # first one before any checkpoint exists) or some steps past the newest checkpoint, with a
    # few milliseconds of jitter so the signal lands anywhere (mid-batch, mid-save).
    plan = [("start-up", signal.SIGKILL), ("steps", signal.SIGTERM), ("steps", signal.SIGKILL),
            ("start-up", signal.SIGTERM), ("steps", signal.SIGKILL), ("steps", signal.SIGTERM)]
    codes: list[int] = []
    for attempt in range(len(plan) + 3):  # a bounded number of tries, as a job's retry limit
        job = start(*fixed_command(run_dir))
        if attempt < len(plan):
            moment, signum = plan[attempt]
            if moment == "start-up":
                reached = wait_for(job, config_written(run_dir))
            else:
                target = newest_step(run_dir) + rng.randint(4, 12)
                reached = wait_for(job, lambda: newest_step(run_dir) >= target)  # noqa: B023
            assert reached, f"attempt {attempt} ended before its {moment} kill: {job.communicate()}"
            time.sleep(rng.uniform(0, 0.03))
            job.send_signal(signum)
        _, err = job.communicate(timeout=SAFETY)
        codes.append(job.returncode)
        if job.returncode == 0:
            break
        assert "Traceback" not in err, err
    # SIGKILL: -9; SIGTERM mid-training: 143 after a checkpoint; during start-up before kiln's
    # handler is installed: -15. Each is what a shell reports as 137 or 143: retryable.
    assert codes[:len(plan)] == [-9, 143, -9, codes[3], -9, 143] and codes[3] in (-15, 143), codes
    assert codes[-1] == 0 and len(codes) == len(plan) + 1, codes
    assert_identical(tmp_path / "reference", run_dir)
    assert_one_history(run_dir, 5)
    assert read_summary(run_dir).status == "completed"
    records = read_events(run_dir / "logs/events.jsonl")
    assert [r["event"] for r in records].count("resumed") >= 1

    # Requeued once more after it finished: exit 0 at once, nothing trained, nothing logged.
    events, summary = (run_dir / "logs/events.jsonl").read_bytes(), (run_dir / "summary.json").read_bytes()
    again = run_cli(*fixed_command(run_dir))
    assert again.returncode == 0, again.stderr
    assert f"{run_dir.name} already finished all 5 epochs; nothing to resume" in again.stdout
    assert "run directory:" not in again.stdout  # no training started
    assert (run_dir / "logs/events.jsonl").read_bytes() == events
    assert (run_dir / "summary.json").read_bytes() == summary


@pytest.mark.slow
def test_a_different_config_is_refused_naming_the_key_and_a_longer_run_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI's own main() in this process: the decision is the CLI's, no signal is involved, and
    # the real-process path of the same command is the requeue test's.
    run_dir = tmp_path / "job"
    assert main(fixed_command(run_dir, "training.epochs=1")) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}

    assert main(fixed_command(run_dir, "training.epochs=1", "training.lr=0.02")) == 2
    other = capsys.readouterr().err
    assert other.startswith(f"error: refusing to resume {run_dir.name} with a changed config"), other
    assert "  - training.lr: 0.01 -> 0.02\n" in other and "another --run-dir" in other
    assert "Traceback" not in other
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before  # nothing touched

    assert main(fixed_command(run_dir, "training.epochs=2")) == 0  # a resume-safe change
    assert f"resuming {run_dir} from checkpoint" in capsys.readouterr().out
    assert read_summary(run_dir).epochs_trained == 2
    assert_one_history(run_dir, 2)


def test_a_directory_that_is_not_a_kiln_run_is_refused_naming_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "home"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    resumed = run_cli("resume", str(junk))
    assert resumed.returncode == 2
    assert resumed.stderr.startswith(f"error: {junk} is not a run directory: it has no config.yaml")
    trained = run_cli("train", *TINY_OVERRIDES, f"run.output_dir={tmp_path}", "--run-dir", str(junk))
    assert trained.returncode == 2
    assert trained.stderr.startswith(f"error: {junk} is not a kiln run directory (it has no config.yaml) "
                                     "and is not empty: it holds notes.txt")
    for result in (resumed, trained):
        assert "Traceback" not in result.stderr
    assert main(["train", "--run-dir", str(junk), "--resume", str(junk)]) == 2
    assert "error: --resume and --run-dir name the run twice: pass one" in capsys.readouterr().err
    assert [p.name for p in junk.iterdir()] == ["notes.txt"]


# -- several processes: --nproc and torchrun's own restarts -------------------------------------

def distributed(run_dir: Path, *extra: str) -> list[str]:
    return ["train", *TINY_OVERRIDES, *SLOW, "tracking.backends=[jsonl,csv]", "training.epochs=2",
            "training.batch_size=16", "checkpoint.every_n_steps=10", f"run.output_dir={run_dir.parent / 'elsewhere'}",
            "--run-dir", str(run_dir), "--nproc", "2", "--quiet", *extra]


def run_job(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(kiln_cmd(*args), cwd=ROOT, env=env_for(), capture_output=True, text=True, timeout=SAFETY)


@pytest.mark.slow
def test_nproc_2_killed_before_its_first_checkpoint_restarts_under_torchrun_and_ends_identical(
    tmp_path: Path,
) -> None:
    """Rank 1 is frozen as the run directory appears (rank 0 cannot pass the first all-reduce
    without it, so no checkpoint can exist) and SIGKILLed; torchrun restarts the workers, which
    start the run over in the same directory and end as an uninterrupted 2-process run."""
    run_dir = tmp_path / "job"
    job = subprocess.Popen(kiln_cmd(*distributed(run_dir, "--max-restarts", "1")), cwd=ROOT, env=env_for(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(job, lambda: (run_dir / "config.yaml").exists() and rank_pid(job.pid, 1) is not None)
    rank1 = rank_pid(job.pid, 1)
    assert rank1 is not None
    os.kill(rank1, signal.SIGSTOP)
    assert not committed(run_dir)
    os.kill(rank1, signal.SIGKILL)
    out, err = job.communicate(timeout=SAFETY)
    assert job.returncode == 0, out + err
    records = read_events(run_dir / "logs/events.jsonl")
    assert records[0]["event"] == "restarted" and records[0]["reason"] == "no checkpoint"
    assert_one_history(run_dir, 2)

    clean = run_job(distributed(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert_identical(tmp_path / "clean", run_dir)

    again = run_job(distributed(run_dir, "--max-restarts", "1"))
    assert again.returncode == 0, again.stderr
    assert "already finished all 2 epochs" in again.stdout
    assert "launching" not in again.stdout  # answered before starting any worker
