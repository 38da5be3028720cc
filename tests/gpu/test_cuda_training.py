"""Training on CUDA: bf16 and fp16 runs, no device-to-host sync on a step that logs nothing, and
torch.compile. Skipped without a CUDA device (conftest.py says why that skip is allowed).

Depends on issue 21's precision and compile work in kiln.train: ``training.precision: fp16`` (with
its loss scaler), ``training.compile``, and a loop whose ordinary steps keep the loss on the device.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kiln.testing import tiny_config
from kiln.train import Callback, Trainer, TrainState

pytestmark = pytest.mark.gpu

LOG_EVERY = 50  # no step in the watched window logs


def cuda_config(tmp_path: Path, *overrides: str):  # type: ignore[no-untyped-def]
    return tiny_config(tmp_path, "run.device=cuda", "run.deterministic=false", "checkpoint.enabled=false",
                       f"tracking.log_every_n_steps={LOG_EVERY}", "training.batch_size=16", *overrides)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cuda(tmp_path: Path, precision: str) -> None:
    result = Trainer(cuda_config(tmp_path, f"training.precision={precision}", "training.epochs=3"), quiet=True).fit()
    assert result.status == "completed"
    assert result.test_metrics["test_accuracy"] > 0.8  # digits: fp32 reaches ~0.95 in 3 epochs


class SyncWatch(Callback):
    """Raises on any synchronizing CUDA call between the start of step ``step`` and the start of
    the next: the whole step, its batch_end hooks (NaN guard, meters, tracking) included."""

    def __init__(self, step: int) -> None:
        self.step, self.watched = step, False

    def on_batch_start(self, state: TrainState) -> None:
        if state.batch_in_epoch == self.step:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            self.watched = True
        elif state.batch_in_epoch == self.step + 1:
            torch.cuda.set_sync_debug_mode(0)


def test_a_step_that_logs_nothing_issues_no_device_to_host_sync(tmp_path: Path) -> None:
    watch = SyncWatch(step=5)  # neither a logging step (every 50) nor the epoch's last
    try:
        result = Trainer(cuda_config(tmp_path, "training.epochs=1"), callbacks=[watch], quiet=True).fit()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert watch.watched and result.status == "completed"


def test_compiled_training_saves_the_eager_keys(tmp_path: Path) -> None:
    eager = Trainer(cuda_config(tmp_path / "eager", "training.epochs=1"), quiet=True).fit()
    compiled = Trainer(cuda_config(tmp_path / "compiled", "training.epochs=1", "training.compile=default"),
                       quiet=True).fit()
    assert compiled.status == "completed"
    keys = {name: set(load_file(r.run_dir / "models" / "model.safetensors")) for name, r in
            (("eager", eager), ("compiled", compiled))}
    assert keys["compiled"] == keys["eager"]
    assert not any("_orig_mod" in k for k in keys["compiled"])
