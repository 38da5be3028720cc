"""Two gloo processes through ``kiln train --nproc 2``: the run completes, only rank 0 writes, the
logged metrics are job-wide averages, and the weights match one process with the same global batch.

Why a tolerance and not bit equality: one process averages the gradient of 128 samples inside one
matmul; DDP averages two 64-sample means (gloo sums them, then divides by 2). Both are the same
mean in exact arithmetic, but fp32 rounds the sums in a different order (~1e-7 relative per step).
SGD carries such differences along without amplifying them (Adam's division by sqrt(v) would blow
them up on near-zero gradients): after 16 steps the weights differed by at most 4.5e-8 (measured
on torch 2.13 CPU; weights up to 0.42). The check allows WEIGHT_TOL = 1e-6 and shows that a run
with half the batch (another data order per step) is far outside it (0.51 apart).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kiln.config.loader import load_config
from kiln.data.build import build_data
from kiln.data.loader import make_loader
from kiln.models.build import build_model
from kiln.tasks import build_task
from kiln.tracking import read_events
from kiln.train import Callback, Trainer, TrainState
from kiln.train.evaluate import evaluate
from kiln.train.trainer import TrainingInterrupted
from tests.distributed.conftest import env_for, kiln, overrides, writes_by_rank

# 1024 training samples, 8 steps of 128 per epoch: every global batch is full and splits evenly
# into two 64-sample halves, so both runs see exactly the same samples in every step.
SAME_GLOBAL_BATCH = (
    "data.subset=1024", "training.batch_size=128", "distributed.batch_size=global",
    "training.optimizer=sgd", "training.lr=0.05", "training.momentum=0.9",
)
WEIGHT_TOL = 1e-6


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "models" / "model.safetensors"))


def epoch_metrics(run_dir: Path) -> list[dict[str, float]]:
    events = read_events(run_dir / "logs" / "events.jsonl")
    return [e["metrics"] for e in events if e["event"] == "metrics" and e["scope"] == "epoch"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    out, writes = tmp_path / "ddp", tmp_path / "writes"
    result = kiln("train", *overrides(out, *SAME_GLOBAL_BATCH), "--nproc", "2", "--quiet",
                  env=env_for(out, writes))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "processes / effective batch" in result.stdout

    runs = [p for p in out.iterdir() if (p / "config.yaml").is_file()]
    assert len(runs) == 1, runs
    ddp_dir = runs[0]
    summary = json.loads((ddp_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["batch"] == {
        "world_size": 2, "batch_size_mode": "global", "per_process_batch": 64, "grad_accum": 1,
        "effective_batch": 128, "lr_scaling": "none", "lr_factor": 1.0, "base_lr": 0.05, "lr": 0.05,
    }

    # Only rank 0 wrote: rank 1's processes created, wrote, renamed or removed nothing there.
    by_rank = writes_by_rank(writes)
    assert by_rank.get("1", []) == []
    written = "\n".join(by_rank["0"])
    for name in ("summary.json", "events.jsonl", "model.safetensors", "checkpoints/epoch0002", ".elastic"):
        assert name in written

    # The logged validation metrics are those of the whole split (each rank scored half of it).
    cfg = load_config(ddp_dir / "config.yaml")
    data = build_data(cfg.data, cfg.run.seed)
    model = build_model(cfg.model, data.spec)
    model.load_state_dict(final_weights(ddp_dir))
    task = build_task(data.spec, cfg.training.loss)
    assert data.val is not None
    whole = evaluate(model, make_loader(data.val, 512, 0), task, torch.device("cpu"))
    logged = epoch_metrics(ddp_dir)
    assert [m["epoch"] for m in logged] == [1, 2]
    assert logged[-1]["val_loss"] == pytest.approx(whole["loss"], rel=1e-6)
    assert logged[-1]["val_accuracy"] == pytest.approx(whole["accuracy"], abs=1e-9)

    # One process, same global batch and data order: the same training metrics and weights.
    single = Trainer(load_config(None, overrides(tmp_path / "one", *SAME_GLOBAL_BATCH)), quiet=True).fit()
    reference = epoch_metrics(single.run_dir)
    for ddp_epoch, one_epoch in zip(logged, reference, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert ddp_epoch[key] == pytest.approx(one_epoch[key], rel=1e-5, abs=1e-6), key
    difference = max_difference(final_weights(ddp_dir), final_weights(single.run_dir))
    assert difference < WEIGHT_TOL

    # The tolerance is tight enough to matter: half the batch (another data order) is far off.
    other = Trainer(
        load_config(None, overrides(tmp_path / "other", *SAME_GLOBAL_BATCH, "training.batch_size=64")),
        quiet=True,
    ).fit()
    assert max_difference(final_weights(ddp_dir), final_weights(other.run_dir)) > 100 * WEIGHT_TOL


class SigtermAfterBatch(Callback):
    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_batch_end(self, state: TrainState) -> None:
        if state.batch_in_epoch == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_a_one_process_run_resumes_on_two(tmp_path: Path) -> None:
    """README: `kiln resume RUN --nproc 2` also with another N than the run was started with.
    Stopped after batch 10 of 21 (64 samples each) on one process, the 640 samples seen are 5 of
    the 2-process job's batches of 2 x 64; it finishes the epoch's 11 and one more epoch."""
    cfg = load_config(None, overrides(tmp_path / "runs"))
    with pytest.raises(TrainingInterrupted):
        Trainer(cfg, callbacks=[SigtermAfterBatch(10)], quiet=True).fit()
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "config.yaml").is_file()]

    resumed = kiln("resume", str(run_dir), "--nproc", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming {run_dir} from checkpoint epoch0000-step00000010-batch00010" in resumed.stdout
    assert ("resuming a run checkpointed with 1 process(es) on 2: the data order from here on differs "
            "from an uninterrupted run (each rank's shard changes), and the epoch continues at batch 5 "
            "of 11 (was 10 with 1); effective batch 64 -> 128") in resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_trained"] == 2
    assert summary["batch"]["world_size"] == 2 and summary["batch"]["effective_batch"] == 128
    assert summary["global_step"] == 10 + (11 - 5) + 11
    assert [m["epoch"] for m in epoch_metrics(run_dir)] == [1, 2]
    (event,) = [e for e in read_events(run_dir / "logs/events.jsonl") if e["event"] == "resumed"]
    assert event["checkpoint"] == "epoch0000-step00000010-batch00010" and event["global_step"] == 10
