"""Out of device memory in the middle of a run: torch's real OutOfMemoryError, raised by a model's
forward at a chosen batch (what a CUDA allocation that fails raises), stops the run with the batch
size and the ways out, after a checkpoint of the position when one can be written."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.train.test_resume import last_checkpoint

from kiln.runs import read_summary
from kiln.testing import tiny_config
from kiln.train import Trainer
from kiln.train.memory import DeviceOutOfMemory

OOM = "model.target=tests.train.hardware_models:OutOfMemoryAt"


def test_out_of_memory_names_the_batch_and_checkpoints(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, OOM, "model.options={at: 7}", "training.batch_size=32")
    with pytest.raises(DeviceOutOfMemory) as err:
        Trainer(cfg, quiet=True).fit()
    message = str(err.value)
    assert message.startswith(
        "the device ran out of memory at epoch 1, batch 7 (step 6) with training.batch_size=32 per "
        "process (grad_accum 1): CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    assert "training.batch_size=16 training.grad_accum=2" in message
    assert "kiln tune batch-size -c CONFIG" in message
    (run_dir,) = tmp_path.iterdir()
    checkpoint = last_checkpoint(run_dir)
    assert f"latest checkpoint: {checkpoint.path}" in message
    assert checkpoint.meta["reason"] == "out_of_memory"
    # the failed batch is not counted, so a resume trains it again; its partial gradients are gone
    assert (checkpoint.meta["global_step"], checkpoint.meta["batch_in_epoch"]) == (6, 6)
    assert checkpoint.trainer["grads"] == {}
    summary = read_summary(run_dir)
    assert summary.status == "crashed" and (summary.error or "").startswith("DeviceOutOfMemory: the device ran out")


def test_inside_an_accumulation_window_no_checkpoint_is_written(tmp_path: Path) -> None:
    """Batch 8 is the second of step 4's window: the gradients of batch 7 and the partial ones of
    batch 8 cannot be told apart, so the last periodic checkpoint (none here) stands."""
    cfg = tiny_config(tmp_path, OOM, "model.options={at: 8}", "training.batch_size=32", "training.grad_accum=2")
    with pytest.raises(DeviceOutOfMemory) as err:
        Trainer(cfg, quiet=True).fit()
    assert "training.batch_size=16 training.grad_accum=4" in str(err.value)
    assert "no checkpoint could be written at this point" in str(err.value)
    (run_dir,) = tmp_path.iterdir()
    assert not list((run_dir / "checkpoints").glob("*/meta.json"))
