"""A checkpoint written before TrainState's control fields were typed (kiln 0.1.0 at 60ca42a,
when the loop's requests lived in ``TrainState.extras``) still loads and resumes exactly where it
stopped. Those requests were never part of a checkpoint, so the trainer state's format is the same;
this proves it on the bytes that code wrote.

The fixture is that code's own output: a tiny run (``tiny_config`` with training.epochs=2,
training.grad_accum=2, checkpoint.keep_last_n=1) stopped by SIGTERM after batch 3 of epoch 1, so
it holds a mid-epoch position, a partial metric sum and gradients of an unfinished accumulation
window.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file
from typing_extensions import override

from kiln.checkpoint import CheckpointManager
from kiln.testing import tiny_config
from kiln.train import Callback, Trainer, TrainState

OLD = Path(__file__).parent / "data" / "v0.1.0-60ca42a" / "epoch0000-step00000001-batch00003"


class AtStart(Callback):
    """The loop's position, weights and gradients as the resumed run starts."""

    @override
    def on_fit_start(self, state: TrainState) -> None:
        self.position = (state.epoch, state.global_step, state.batch_in_epoch)
        self.weights = {k: v.clone() for k, v in state.model.state_dict().items()}
        self.grads = {n: p.grad.clone() for n, p in state.model.named_parameters() if p.grad is not None}
        self.pending = (state.stop_signal, state.checkpoint_reason, state.failed, state.stop_requested)


def test_a_checkpoint_of_the_previous_code_resumes_where_it_stopped(tmp_path: Path) -> None:
    run_dir = tmp_path / "tiny_old"
    shutil.copytree(OLD, run_dir / "checkpoints" / OLD.name)
    checkpoint = CheckpointManager(run_dir / "checkpoints", 1, 1, "min").load_latest()
    assert checkpoint is not None and checkpoint.meta["reason"] == "signal"
    assert "skipped" not in checkpoint.meta  # its manifest verified: nothing fell back

    cfg = tiny_config(tmp_path, "training.epochs=2", "training.grad_accum=2", "checkpoint.keep_last_n=1",
                      backends=("jsonl",))
    probe = AtStart()
    result = Trainer(cfg, callbacks=[probe], quiet=True, resume_from=checkpoint, run_dir=run_dir).fit()

    assert probe.position == (0, 1, 3)
    assert probe.pending == (None, None, False, False)  # no request of the old run carried over
    saved = load_file(OLD / "model.safetensors")
    assert probe.weights.keys() == saved.keys()
    assert all(torch.equal(probe.weights[k], saved[k]) for k in saved)
    old_grads = torch.load(OLD / "trainer.pt", weights_only=True)["grads"]  # fresh: training changed the restored ones
    assert probe.grads.keys() == old_grads.keys() and probe.grads  # batch 3 of an accumulation of 2
    assert all(torch.equal(probe.grads[n], old_grads[n]) for n in old_grads)
    assert result.status == "completed" and result.metrics["epoch"] == 2
    latest = CheckpointManager(run_dir / "checkpoints", 1, 1, "min").load_latest()
    assert latest is not None and latest.meta["epoch"] == 2 and latest.meta["reason"] in ("periodic", "last")
