"""training.compile on a CPU (torch.compile's C++ backend): checkpoints and the model package hold
the eager module's keys, compile time is reported apart, a resume works with compile on, and a
model that cannot be compiled trains eagerly, saying so. One tiny MLP epoch per run: compiling it
takes about 20 s on two cores the first time, a second or two once torch's cache holds it."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.train.test_resume import SendSignal, interrupt_and_resume, last_checkpoint

import kiln
from kiln.runs import read_summary
from kiln.testing import tiny_config
from kiln.train import Trainer

ONE_EPOCH = ("training.epochs=1",)


@pytest.fixture(scope="module")
def eager(tmp_path_factory: pytest.TempPathFactory) -> kiln.FitResult:
    return Trainer(tiny_config(tmp_path_factory.mktemp("eager"), *ONE_EPOCH), quiet=True).fit()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> kiln.FitResult:
    cfg = tiny_config(tmp_path_factory.mktemp("compiled"), *ONE_EPOCH, "training.compile=default")
    return Trainer(cfg, quiet=True).fit()


def test_compiled_run_saves_the_eager_modules_keys(eager: kiln.FitResult, compiled: kiln.FitResult) -> None:
    assert compiled.status == "completed"
    assert compiled.summary.compile is not None and compiled.summary.compile.compiled
    expected = set(last_checkpoint(eager.run_dir).model)
    assert not any(k.startswith("_orig_mod.") for k in expected)
    assert set(last_checkpoint(compiled.run_dir).model) == expected
    assert set(load_file(compiled.run_dir / "models/model.safetensors")) == expected
    model = kiln.load_model(compiled.run_dir)  # the package loads as any eager run's does
    assert isinstance(model, torch.nn.Module) and set(model.state_dict()) == expected
    # trained, and close to (not bit-equal with) the eager run: fused kernels round differently
    assert compiled.test_metrics["test_accuracy"] > 0.5
    assert abs(compiled.test_metrics["test_accuracy"] - eager.test_metrics["test_accuracy"]) < 0.05


def test_compile_time_is_reported_apart(eager: kiln.FitResult, compiled: kiln.FitResult) -> None:
    record = compiled.summary.compile
    assert record is not None
    assert record.model_dump() == {"mode": "default", "compiled": True, "seconds": record.seconds, "error": None}
    assert record.seconds > 0
    assert compiled.metrics["compile_seconds"] == pytest.approx(record.seconds, abs=1e-3)
    assert compiled.metrics["samples_per_sec"] > 0
    assert "compile_seconds" not in eager.metrics
    assert eager.summary.compile is not None and eager.summary.compile.mode == "false"


def test_resume_with_compile_on(tmp_path: Path) -> None:
    run_dir = interrupt_and_resume(
        tmp_path, SendSignal(0, 5, signal.SIGTERM), (*ONE_EPOCH, "training.compile=default")
    )
    summary = read_summary(run_dir)
    assert summary.status == "completed" and summary.compile is not None and summary.compile.compiled
    assert summary.epochs_trained == 1 and summary.test["test_accuracy"] > 0.5


def test_a_model_that_cannot_compile_trains_eagerly(
    tmp_path: Path, eager: kiln.FitResult, caplog: pytest.LogCaptureFixture
) -> None:
    """No working C++ compiler for inductor's CPU code: the first step fails to compile before it
    runs anything, so the eager retry makes the run the eager run, bit for bit."""
    import torch._inductor.config as inductor

    torch._dynamo.reset()  # forget the graphs compiled by the tests before: they would be reused
    cfg = tiny_config(tmp_path, *ONE_EPOCH, "training.compile=default")
    with inductor.patch({"cpp.cxx": ("/nonexistent/g++",), "fx_graph_cache": False}), caplog.at_level(logging.WARNING, "kiln"):
        result = Trainer(cfg, quiet=True).fit()
    assert result.status == "completed"
    record = result.summary.compile
    assert record is not None and not record.compiled and record.mode == "default"
    assert record.error is not None and "C++ compiler" in record.error, record.error
    assert any("training.compile=default failed, training eagerly instead" in r.message for r in caplog.records)
    a, b = kiln.load_model(eager.run_dir).state_dict(), kiln.load_model(result.run_dir).state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
