"""training.precision on a CPU: fp16 and bf16 autocast and train, fp16's loss scaler skips and
counts overflowing steps, and its state rides in every checkpoint so an fp16 run interrupted by a
real signal and resumed ends bit for bit like the uninterrupted one."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from tests.train.test_resume import SendSignal, history, interrupt_and_resume, last_checkpoint

import kiln
from kiln.runs import read_summary
from kiln.testing import tiny_config
from kiln.train import Trainer
from kiln.train.precision import Amp, autocast, resolve_precision

# Logits x300 (tests/train/hardware_models.py): the first fp16 steps overflow and are skipped.
SPIKY = ("model.target=tests.train.hardware_models:Spiky", "training.precision=fp16", "training.epochs=3",
         "training.grad_accum=2")


def test_resolution_and_autocast_dtypes() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"  # half precision is emulated on most CPUs
    assert [resolve_precision(p, cpu) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    layer = torch.nn.Linear(4, 2)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16), ("auto", torch.float32)):
        with autocast(cpu, precision):
            assert layer(torch.ones(1, 4)).dtype == dtype, precision
    assert not Amp("bf16", cpu).scaling and Amp("fp16", cpu).scaling


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_trains_and_is_recorded(tmp_path: Path, precision: str) -> None:
    result = Trainer(tiny_config(tmp_path, f"training.precision={precision}"), quiet=True).fit()
    assert result.status == "completed" and result.test_metrics["test_accuracy"] > 0.5
    assert result.summary.precision is not None
    assert result.summary.precision.model_dump() == {
        "requested": precision, "resolved": precision, "tf32": False,
        "amp_skipped_steps": 0 if precision == "fp16" else None,
    }
    assert ("amp_skipped_steps" in result.metrics) == (precision == "fp16")


def test_auto_resolves_to_fp32_on_cpu(tmp_path: Path) -> None:
    result = Trainer(tiny_config(tmp_path, "training.precision=auto", "training.epochs=1"), quiet=True).fit()
    assert result.summary.precision is not None
    assert (result.summary.precision.requested, result.summary.precision.resolved) == ("auto", "fp32")


@pytest.fixture(scope="module")
def spiky_straight(tmp_path_factory: pytest.TempPathFactory) -> kiln.FitResult:
    return Trainer(tiny_config(tmp_path_factory.mktemp("straight"), *SPIKY), quiet=True).fit()


def test_fp16_skipped_steps_are_counted(spiky_straight: kiln.FitResult) -> None:
    summary = spiky_straight.summary
    assert summary.precision is not None and summary.precision.amp_skipped_steps is not None
    skipped = summary.precision.amp_skipped_steps
    # 65536 * 300 / 64 overflows fp16 until the scale has halved about 3 times (once per skip)
    assert 2 <= skipped <= 10, skipped
    assert [h["amp_skipped_steps"] for h in history(spiky_straight.run_dir)] == [skipped] * 3
    scaler = last_checkpoint(spiky_straight.run_dir).trainer["amp"]
    assert scaler["skipped_steps"] == skipped
    assert scaler["scaler"]["scale"] == 65536.0 / 2**skipped  # no growth within 2000 steps


def test_fp16_interrupted_and_resumed_equals_uninterrupted(tmp_path: Path, spiky_straight: kiln.FitResult) -> None:
    """Interrupted in epoch 2, after the skips: a resume without the scaler's state would start
    again from a scale of 65536 and skip those steps again."""
    run_dir = interrupt_and_resume(tmp_path, SendSignal(1, 5, signal.SIGTERM), SPIKY)
    straight = spiky_straight.run_dir
    assert history(run_dir) == history(straight)
    a, b = kiln.load_model(straight).state_dict(), kiln.load_model(run_dir).state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert last_checkpoint(run_dir).trainer["amp"] == last_checkpoint(straight).trainer["amp"]
    assert read_summary(run_dir).precision == read_summary(straight).precision


def test_channels_last_trains_a_cnn_in_nhwc(tmp_path: Path) -> None:
    from kiln.errors import ConfigError
    from kiln.train import Callback, TrainState

    class Layout(Callback):
        def on_batch_end(self, state: TrainState) -> None:
            conv = [m for m in state.model.modules() if isinstance(m, torch.nn.Conv2d)][-1]  # 8 in, 8 out
            self.nhwc = conv.weight.is_contiguous(memory_format=torch.channels_last)
            self.nchw = conv.weight.is_contiguous()

    layout = Layout()
    cfg = tiny_config(tmp_path, "model.name=cnn", "model.filters=[8, 8]", "model.pool=none", "model.hidden=[16]",
                      "model.channels_last=true", "training.epochs=1")
    result = Trainer(cfg, callbacks=[layout], quiet=True).fit()
    assert result.status == "completed" and result.test_metrics["test_accuracy"] > 0.3
    assert layout.nhwc and not layout.nchw
    saved = kiln.load_model(result.run_dir)  # rebuilt in the usual layout, the weights load
    assert all(p.is_contiguous() for p in saved.parameters())
    with pytest.raises(ConfigError, match="channels_last"):  # an MLP has no convolution to speed up
        tiny_config(tmp_path, "model.channels_last=true")
