"""A 2-rank checkpoint taken inside a gradient-accumulation window (SIGTERM after batch 3 with
grad_accum=2), resumed on 2 processes (exactly, from rank 0's checkpoint on both ranks) and on 1
(the partial window's gradients are dropped and the window trained again, so none counts twice)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from typing_extensions import override

from kiln import resume
from kiln.train.callback import Callback
from kiln.train.resume import plan_resume
from kiln.train.state import TrainState
from tests.distributed.conftest import env_for, kiln, overrides
from tests.distributed.test_ddp import final_weights

# 1024 samples: 32 batches of 16 per rank per epoch, global batch 32, two batches per step.
ACCUM = ("data.subset=1024", "training.batch_size=32", "distributed.batch_size=global", "training.grad_accum=2",
         "training.epochs=1", "training.optimizer=sgd", "training.lr=0.05", "training.momentum=0.9",
         "model.target=tests.distributed.faulty:SigtermOnRank", "distributed.timeout=60")


def only_run(output_dir: Path) -> Path:
    (run_dir,) = [p for p in output_dir.iterdir() if (p / "config.yaml").is_file()]
    return run_dir


@pytest.fixture(scope="module")
def mid_window(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-rank run stopped by SIGTERM (to rank 0) after batch 3, inside its second window."""
    out = tmp_path_factory.mktemp("accum")
    job = kiln("train", *overrides(out, *ACCUM, "model.options={rank: 0, at: 3}"), "--nproc", "2", "--quiet",
               env=env_for(), timeout=150)
    assert "SIGTERM received: stopped at epoch 1, batch 3 (step 1)" in job.stderr, job.stdout + job.stderr
    run_dir = only_run(out)
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["epoch0000-step00000001-batch00003"]
    return run_dir


class Probe(Callback):
    """Records where the loop starts and whether gradients were put back."""

    def __init__(self) -> None:
        self.start: int | None = None
        self.has_grads: bool | None = None

    @override
    def on_fit_start(self, state: TrainState) -> None:
        self.start = state.batch_in_epoch
        self.has_grads = any(p.grad is not None for p in state.model.parameters())


@pytest.mark.slow
def test_same_world_size_resumes_exactly_from_rank_zeros_checkpoint(mid_window: Path, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(mid_window, tmp_path / mid_window.name))
    # the model would count its batches from 0 again and stop at 3: turn its SIGTERM off
    resumed = kiln("resume", str(run_dir), "model.options={rank: 0, at: -1}", "--allow-config-change",
                   "--nproc", "2", "--quiet", env=env_for(), timeout=150)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming {run_dir} from checkpoint epoch0000-step00000001-batch00003" in resumed.stdout
    assert "gradient-accumulation window" not in resumed.stderr  # same world: the gradients are kept

    clean = tmp_path / "clean"
    uninterrupted = kiln("train", *overrides(clean, *ACCUM, "model.options={rank: 0, at: -1}"), "--nproc", "2",
                         "--quiet", env=env_for(), timeout=150)
    assert uninterrupted.returncode == 0, uninterrupted.stdout + uninterrupted.stderr
    a, b = final_weights(run_dir), final_weights(only_run(clean))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_other_world_size_drops_the_partial_window(
    mid_window: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = Path(shutil.copytree(mid_window, tmp_path / mid_window.name))
    plan = plan_resume(run_dir)  # RANK is unset here: the model sends no SIGTERM
    assert plan.checkpoint is not None and plan.checkpoint.trainer["grads"]  # batch 3's gradients are in it
    probe = Probe()
    with caplog.at_level(logging.WARNING, logger="kiln"):
        result = resume(plan, callbacks=[probe], quiet=True)  # the plan asserted on above
    assert result.status == "completed"
    # One process takes 32 samples per batch: the job's 64 samples before the window's start are
    # 2 batches, and the window [2, 4) is trained again from scratch: its batch 2 holds exactly the
    # samples whose gradients the checkpoint carried, which would otherwise count twice.
    assert (probe.start, probe.has_grads) == (2, False)
    assert "inside a gradient-accumulation window (batch 3, grad_accum=2)" in caplog.text
    assert "partial gradients were dropped" in caplog.text
