"""Step evaluation and the system-metrics callback on real loaders, models and events.jsonl."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kiln.config import load_config
from kiln.config.schema import LossConfig
from kiln.data.spec import DataSpec
from kiln.lm.generate import generate_text
from kiln.tasks import build_task
from kiln.tracking.jsonl import JsonlTracker, read_events
from kiln.tracking.multi import MultiTracker
from kiln.train.callbacks.step_eval import (
    PROMPT_CHARS,
    SAMPLE_TEMPERATURE,
    SAMPLE_TOKENS,
    SAMPLE_TOP_K,
    StepEvaluation,
)
from kiln.train.callbacks.system_metrics import SystemMetrics
from kiln.train.evaluate import evaluate
from kiln.train.state import TrainState

CLS = DataSpec(name="t", task="classification", input_shape=(2,), num_classes=2)
VOCAB = tuple("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX")  # 50 > SAMPLE_TOP_K: top-k filters
LM = DataSpec(name="chars", task="language_modeling", input_shape=(20,), num_classes=50, class_names=VOCAB)


def _tracker(tmp_path: Path) -> tuple[MultiTracker, Path]:
    path = tmp_path / "events.jsonl"
    return MultiTracker(JsonlTracker(path), {}), path


def _metrics(path: Path, tracker: MultiTracker | None = None) -> list[dict[str, object]]:
    if tracker is not None:
        tracker.jsonl.flush()  # step metrics may wait in the buffer
    return [r for r in read_events(path) if r.get("event") == "metrics"]


def _state(tmp_path: Path, model: nn.Module, spec: DataSpec) -> TrainState:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainState(load_config(None, ["run.seed=7"]), model, opt, spec, tmp_path, steps_per_epoch=10)


def test_classification_evaluates_every_n_optimizer_steps(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    x, y = torch.randn(12, 2), torch.randint(0, 2, (12,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    task = build_task(CLS, LossConfig())
    tracker, path = _tracker(tmp_path)
    cb = StepEvaluation(3, 2, loader, task, torch.device("cpu"), "fp32", tracker, tmp_path / "samples.jsonl")
    assert cb.samples is None  # samples only for language models
    assert (cb.every, cb.max_batches, cb.loader, cb.task, cb.precision, cb.tracker) == (
        3, 2, loader, task, "fp32", tracker)
    state = _state(tmp_path, model, CLS)
    state.samples_seen = 100
    cb.on_fit_start(state)
    assert cb._seen == 100
    for step, stepped in [(1, True), (3, False), (3, True), (5, True), (6, True)]:
        state.global_step, state.optimizer_stepped, state.samples_seen = step, stepped, 100 + 10 * step
        cb.on_batch_end(state)
    got = _metrics(path, tracker)
    assert [(r["step"], r["scope"]) for r in got] == [(3, "step"), (6, "step")]
    want = {f"val_{k}": v for k, v in evaluate(model, loader, task, torch.device("cpu"), "fp32", 2).items()}
    for r in got:
        metrics = dict(r["metrics"])  # type: ignore[arg-type]
        speed = metrics.pop("samples_per_sec")
        assert metrics == pytest.approx(want)
        assert isinstance(speed, float) and speed > 0
    assert cb._seen == 160
    assert not (tmp_path / "samples.jsonl").exists()
    tracker.jsonl.close("completed")


def test_samples_per_sec_counts_samples_since_the_last_evaluation(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    loader = DataLoader(TensorDataset(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long)), batch_size=2)
    tracker, path = _tracker(tmp_path)
    cb = StepEvaluation(1, None, loader, build_task(CLS, LossConfig()), torch.device("cpu"), "fp32", tracker, None)
    state = _state(tmp_path, model, CLS)
    cb.on_fit_start(state)
    cb._clock = time.perf_counter() - 4.0  # four seconds of training since the clock last started
    state.global_step, state.optimizer_stepped, state.samples_seen = 1, True, 400
    cb.on_batch_end(state)
    speed = _metrics(path, tracker)[0]["metrics"]["samples_per_sec"]  # type: ignore[index]
    assert 90 < speed <= 100  # 400 samples over a little more than 4 s
    cb._clock = time.perf_counter() + 1000.0  # a clock that has not advanced: no division by zero
    state.global_step = 2
    cb.on_batch_end(state)
    assert _metrics(path, tracker)[1]["metrics"]["samples_per_sec"] == 0.0  # type: ignore[index]
    tracker.jsonl.close("completed")


class CharModel(nn.Module):
    """Logits [batch, seq, vocab] from token ids: a lookup table, enough to sample from."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(len(VOCAB), len(VOCAB))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)


def test_language_model_logs_tokens_per_sec_and_writes_samples(tmp_path: Path) -> None:
    ids = torch.arange(40).remainder(10).reshape(2, 20)
    ids[1] = ids[1].flip(0)  # the prompt comes from the first window, not the second
    loader = DataLoader(TensorDataset(ids, ids.roll(-1, dims=1)), batch_size=2)
    model = CharModel()
    task = build_task(LM, LossConfig())
    tracker, path = _tracker(tmp_path)
    samples = tmp_path / "run" / "logs" / "samples.jsonl"  # parents created
    cb = StepEvaluation(2, 1, loader, task, torch.device("cpu"), "fp32", tracker, samples)
    assert cb.samples == samples
    state = _state(tmp_path, model, LM)
    cb.on_fit_start(state)
    for step in (2, 4):
        state.global_step, state.optimizer_stepped, state.samples_seen = step, True, step * 3
        cb.on_batch_end(state)
    m = dict(_metrics(path, tracker)[0]["metrics"])  # type: ignore[arg-type]
    assert m["tokens_per_sec"] == pytest.approx(m["samples_per_sec"] * 20)
    assert {"val_loss", "val_perplexity", "val_accuracy"} <= set(m)
    prompt = "".join(VOCAB[int(i)] for i in ids[0][:PROMPT_CHARS])
    assert prompt == "abcdefghijabcdef"
    lines = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    assert [(r["step"], r["prompt"]) for r in lines] == [(2, prompt), (4, prompt)]
    for r in lines:
        want = generate_text(model, VOCAB, prompt, SAMPLE_TOKENS, SAMPLE_TEMPERATURE, SAMPLE_TOP_K, seed=7 + r["step"])
        assert r["text"] == want and len(want) == PROMPT_CHARS + SAMPLE_TOKENS
    assert lines[0]["text"] != lines[1]["text"]  # a different seed per step
    # a resumed run at step 2 drops the later sample
    cb2 = StepEvaluation(2, 1, loader, task, torch.device("cpu"), "fp32", tracker, samples)
    state.global_step = 2
    cb2.on_fit_start(state)
    assert [json.loads(line)["step"] for line in samples.read_text(encoding="utf-8").splitlines()] == [2]
    tracker.jsonl.close("completed")


def test_system_metrics_run_for_the_fit(tmp_path: Path) -> None:
    tracker, path = _tracker(tmp_path)
    cb = SystemMetrics(tracker, 0.01)
    assert (cb.tracker, cb.interval, cb.monitor) == (tracker, 0.01, None)
    state = _state(tmp_path, nn.Linear(1, 1), CLS)
    state.global_step = 42
    cb.on_fit_start(state)
    monitor = cb.monitor
    assert monitor is not None and monitor.interval == 0.01 and monitor.tracker is tracker
    deadline = time.monotonic() + 30
    while not [r for r in _metrics(path, tracker) if r["scope"] == "system"] and time.monotonic() < deadline:
        tracker.jsonl.flush()
        time.sleep(0.01)
    first = next(r for r in _metrics(path, tracker) if r["scope"] == "system")
    assert first["step"] == 42
    cb.on_fit_end(state)
    assert cb.monitor is None and not monitor._thread.is_alive()
    cb.on_exception(state)  # stopping twice is harmless
    cb.on_fit_start(state)
    second = cb.monitor
    cb.on_exception(state)
    assert cb.monitor is None and second is not None and not second._thread.is_alive()
    tracker.jsonl.close("completed")
    assert math.isfinite(float(next(iter(first["metrics"].values()))))  # type: ignore[union-attr]
