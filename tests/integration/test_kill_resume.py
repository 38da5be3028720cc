"""Real processes killed with real signals: SIGKILL at random moments, SIGTERM with a checkpoint."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import kiln
from kiln.runs import read_summary
from kiln.testing.chaos import kiln_command, train_with_kills
from tests.conftest import run_cli

# A checkpoint every few steps, so that kills also land while checkpoints are being written. The
# kills are placed by training progress (not wall time), so a fast machine cannot finish the run
# before all six kills are spent: 5 epochs are 405 steps, six kills use at most about 270. (Ten
# kills cost 40 s more of the suite's time and reached no state six do not: every kill lands
# mid-step, mid-save or in start-up by the same random placement.)
CONFIG = [
    "run.name=kill", "run.deterministic=true", "run.progress=false",
    "model.hidden=[32]", "model.dropout=0.2", "training.epochs=5", "training.batch_size=16",
    "training.lr=0.01", "checkpoint.every_n_steps=10", "checkpoint.keep_last_n=2",
    "tracking.backends=[csv]",
]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_identical_weights(tmp_path: Path) -> None:
    reference = run_cli("train", *CONFIG, f"run.output_dir={tmp_path / 'reference'}", "--quiet")
    assert reference.returncode == 0, reference.stderr
    (straight,) = (tmp_path / "reference").iterdir()

    report = train_with_kills(CONFIG, tmp_path / "killed", kills=6, rng=random.Random(1234), steps=(20, 40))
    assert report.kills == 6
    a, b = kiln.load_model(straight).state_dict(), kiln.load_model(report.run_dir).state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert read_summary(report.run_dir).test == read_summary(straight).test


@pytest.mark.slow
def test_sigterm_commits_a_checkpoint_exits_143_and_resume_completes(tmp_path: Path) -> None:
    process = subprocess.Popen(
        kiln_command("train", *CONFIG, "training.epochs=50", f"run.output_dir={tmp_path}", "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*/checkpoints/epoch*[0-9]")):
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "SIGTERM received" in stderr and "resume with: kiln resume" in stderr
    (run_dir,) = tmp_path.iterdir()
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    assert any(p.name.endswith(tuple("0123456789")) for p in checkpoints)
    summary = read_summary(run_dir)
    assert summary.status == "interrupted"

    resumed = run_cli("resume", str(run_dir), "training.epochs=3", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert read_summary(run_dir).status == "completed"
    again = run_cli("resume", str(run_dir), "training.epochs=3")
    assert again.returncode == 0 and "already finished" in again.stdout
