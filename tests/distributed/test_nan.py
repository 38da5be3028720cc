"""A NaN loss on one rank only: the ranks agree on it, both skip the step and stop together (no
hang in DDP's all-reduce), and the run ends as a NaN-stopped single-process run does."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from tests.distributed.conftest import env_for, kiln, overrides
from tests.distributed.test_ddp import epoch_metrics, final_weights

# 1024 samples, 16 batches of 32 per rank and epoch; rank 1's 5th batch is NaN, in epoch 1. The guard
# checks every 4 steps (log_every_n_steps), so the weights go back to step 4, the last clean check.
NAN = ("data.subset=1024", "training.batch_size=32", "training.epochs=3", "tracking.log_every_n_steps=4",
       "model.target=tests.distributed.faulty:NanOnRank")


def only_run(output_dir: Path) -> Path:
    (run_dir,) = [p for p in output_dir.iterdir() if (p / "config.yaml").is_file()]
    return run_dir


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_promptly(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    started = time.monotonic()
    # A hang would be DDP's all-reduce waiting for the rank that skipped: the timeout turns it into
    # a failure (distributed.timeout also bounds every collective, so no orphan outlives the test).
    result = kiln("train", *overrides(out, *NAN, "model.options={rank: 1, at: 5}", "distributed.timeout=60"),
                  "--nproc", "2", "--quiet", env=env_for(), timeout=150)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    run_dir = only_run(out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["stop_reason"].startswith("non-finite loss (NaN or Inf) at epoch 1, batch 5;")
    assert summary["global_step"] == 4  # the NaN batch's step was skipped on both ranks
    # Both ranks stopped: each printed the failure, and torchrun reports both exits.
    assert result.stdout.count("training failed: non-finite loss") == 2, result.stdout
    assert "rank 0" in result.stderr and "rank 1" in result.stderr, result.stderr
    assert [m["epoch"] for m in epoch_metrics(run_dir)] == [1]
    weights = final_weights(run_dir)
    assert all(bool(torch.isfinite(w).all()) for w in weights.values())

    # One process with a NaN loss ends with the same status and exit code.
    single_out = tmp_path / "one"
    single = kiln("train", *overrides(single_out, *NAN, "model.options={rank: -1, at: 5}"), "--quiet",
                  timeout=150)
    assert single.returncode == result.returncode, single.stdout + single.stderr
    single_summary = json.loads((only_run(single_out) / "summary.json").read_text())
    assert single_summary["status"] == "failed"
    assert single_summary["stop_reason"] == summary["stop_reason"]
    print(f"2-rank NaN job ended in {elapsed:.1f}s")
