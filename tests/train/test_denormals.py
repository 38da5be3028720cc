"""Denormal floats are zero while kiln trains (run.flush_denormal), and only then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typing_extensions import override

from kiln.testing import tiny_config
from kiln.train import Callback, Trainer, TrainState
from kiln.train.denormals import flushes_denormals, flushing_denormals


def _cpu_can_flush() -> bool:
    with flushing_denormals(True) as flushed:
        return flushed


needs_ftz = pytest.mark.skipif(not _cpu_can_flush(), reason="this CPU cannot flush denormals (FTZ/DAZ)")


class Probe(Callback):
    """Records, at every step, whether the training thread flushes denormals."""

    def __init__(self) -> None:
        self.seen: set[bool] = set()

    @override
    def on_batch_end(self, state: TrainState) -> None:
        self.seen.add(flushes_denormals())


@needs_ftz
def test_denormals_are_zero_during_training_and_restored_after(tmp_path: Path) -> None:
    assert not flushes_denormals()  # torch's default
    probe = Probe()
    result = Trainer(tiny_config(tmp_path, "training.epochs=1"), callbacks=[probe], quiet=True).fit()
    assert probe.seen == {True}
    assert json.loads((result.run_dir / "summary.json").read_text())["flush_denormal"] is True
    assert not flushes_denormals()  # fit leaves the caller's thread as it found it
    assert (torch.tensor([1e-39]) * 1.0).item() > 0.0


@needs_ftz
def test_off_leaves_denormals_alone(tmp_path: Path) -> None:
    probe = Probe()
    Trainer(tiny_config(tmp_path, "training.epochs=1", "run.flush_denormal=false"), callbacks=[probe], quiet=True).fit()
    assert probe.seen == {False}


@needs_ftz
def test_a_caller_that_already_flushes_keeps_flushing() -> None:
    torch.set_flush_denormal(True)
    try:
        with flushing_denormals(True) as flushed:
            assert flushed
        assert flushes_denormals()  # not turned off: it was not kiln that turned it on
    finally:
        torch.set_flush_denormal(False)
