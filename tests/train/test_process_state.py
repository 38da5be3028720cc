"""fit() puts back what it changes in the process (issue 16, item 6): torch's deterministic
settings, cudnn.benchmark, CUBLAS_WORKSPACE_CONFIG, the signal handlers, the denormal mode and
the thread count. Each is given a value other than torch's default first, so a restore that does
nothing cannot pass, and each is checked in effect during the run."""

from __future__ import annotations

import importlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import torch
from typing_extensions import override

from kiln import settings
from kiln.testing import tiny_config
from kiln.train import Callback, Trainer, TrainState
from kiln.train.denormals import flushes_denormals
from kiln.train.rng import CUBLAS_DETERMINISTIC_WORKSPACE
from kiln.train.signals import GracefulSignals

# Libraries that write the environment when first imported, which a fit may be the first to do:
# scikit-learn (KMP_DUPLICATE_LIB_OK, KMP_INIT_AT_FORK; the digits dataset) and torch._inductor
# (TORCHINDUCTOR_CACHE_DIR; torch.use_deterministic_algorithms imports it). Those writes are
# theirs, once per process; imported here first so the comparison sees only what fit() does.
FIRST_IMPORT_WRITERS = ("sklearn", "torch._inductor")


def _operator_handler(signum: int, frame: FrameType | None) -> None:
    """Stands for a handler the application installed before calling fit()."""


def _process_state() -> dict[str, Any]:
    return {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "environ": dict(os.environ),
        "handlers": {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)},
        "denormals_flushed": flushes_denormals(),
        "threads": torch.get_num_threads(),
    }


class DuringFit(Callback):
    """What the process looked like in the middle of training."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    @override
    def on_batch_end(self, state: TrainState) -> None:
        if not self.seen:
            self.seen = _process_state()


@pytest.fixture
def unusual_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Values other than torch's defaults, put back after the test whatever happens."""
    for module in FIRST_IMPORT_WRITERS:
        importlib.import_module(module)
    before = _process_state()
    monkeypatch.delenv(settings.CUBLAS_WORKSPACE_CONFIG, raising=False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = True
    torch.set_num_threads(2)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _operator_handler)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before["deterministic"], warn_only=before["warn_only"])
        torch.backends.cudnn.benchmark = before["cudnn_benchmark"]
        torch.set_num_threads(before["threads"])
        for signum, handler in before["handlers"].items():
            signal.signal(signum, handler)


@pytest.mark.usefixtures("unusual_process_state")
def test_a_deterministic_fit_puts_back_every_process_setting(tmp_path: Path) -> None:
    before = _process_state()
    assert settings.CUBLAS_WORKSPACE_CONFIG not in before["environ"]
    during = DuringFit()
    cfg = tiny_config(tmp_path, "run.deterministic=true", "run.flush_denormal=true", "training.epochs=1")
    Trainer(cfg, callbacks=[during], quiet=True).fit()

    seen = during.seen
    assert (seen["deterministic"], seen["warn_only"], seen["cudnn_benchmark"]) == (True, False, False)
    assert seen["environ"][settings.CUBLAS_WORKSPACE_CONFIG] == CUBLAS_DETERMINISTIC_WORKSPACE
    assert all(isinstance(getattr(h, "__self__", None), GracefulSignals) for h in seen["handlers"].values())
    assert _process_state() == before


@pytest.mark.usefixtures("unusual_process_state")
def test_an_operators_cublas_workspace_is_kept_and_a_failing_fit_restores_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.CUBLAS_WORKSPACE_CONFIG, ":16:8")
    torch.use_deterministic_algorithms(False)
    before = _process_state()

    class Crash(DuringFit):
        @override
        def on_batch_end(self, state: TrainState) -> None:
            super().on_batch_end(state)
            raise RuntimeError("boom")

    crash = Crash()
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(tiny_config(tmp_path, "run.deterministic=true"), callbacks=[crash], quiet=True).fit()
    assert crash.seen["environ"][settings.CUBLAS_WORKSPACE_CONFIG] == ":16:8"
    assert crash.seen["deterministic"] is True
    assert _process_state() == before
