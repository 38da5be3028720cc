"""Validation every N optimizer steps (``training.eval_every_n_steps``), for step-based training.

At each evaluation it logs, at step scope, the validation metrics over the first
``training.eval_batches`` batches (``val_loss``, ``val_perplexity``, ...), the training
throughput since the previous evaluation (``samples_per_sec``; ``tokens_per_sec`` for language
models), and for a language model appends a sample of generated text to ``logs/samples.jsonl``.

Nothing here draws from the global RNG (evaluation runs without dropout, sampling has its own
seeded generator), so evaluating never changes what the training run computes. On resume the
samples written after the checkpoint are dropped, as events.jsonl is cut back.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from typing_extensions import override

from kiln.tasks import Task
from kiln.tracking.multi import MultiTracker
from kiln.train.callback import Callback
from kiln.train.evaluate import evaluate
from kiln.train.state import TrainState

SAMPLE_TOKENS = 200  # characters generated per sample
SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_K = 40
PROMPT_CHARS = 16  # the sample's prompt: the start of the validation text


class StepEvaluation(Callback):
    def __init__(
        self, every: int, max_batches: int | None, loader: DataLoader[Any], task: Task,
        device: torch.device, precision: str, tracker: MultiTracker, samples: Path | None,
    ) -> None:
        self.every, self.max_batches, self.loader = every, max_batches, loader
        self.task, self.device, self.precision, self.tracker = task, device, precision, tracker
        self.samples = samples if task.name == "language_modeling" else None
        self._clock = time.perf_counter()
        self._seen = 0

    @override
    def on_fit_start(self, state: TrainState) -> None:
        self._clock, self._seen = time.perf_counter(), state.samples_seen
        if self.samples is not None:
            drop_after(self.samples, state.global_step)

    @override
    def on_batch_end(self, state: TrainState) -> None:
        if not state.optimizer_stepped or state.global_step % self.every:
            return
        elapsed = time.perf_counter() - self._clock
        samples = state.samples_seen - self._seen
        metrics = {
            f"val_{k}": v
            for k, v in evaluate(state.model, self.loader, self.task, self.device, self.precision,
                                 self.max_batches).items()
        }
        metrics["samples_per_sec"] = samples / elapsed if elapsed > 0 else 0.0
        if self.task.name == "language_modeling":
            metrics["tokens_per_sec"] = metrics["samples_per_sec"] * math.prod(state.spec.input_shape)
        self.tracker.log_metrics(metrics, state.global_step, "step")
        if self.samples is not None:
            self._write_sample(state)
        self._clock, self._seen = time.perf_counter(), state.samples_seen  # evaluation not counted

    def _write_sample(self, state: TrainState) -> None:
        from kiln.data.text import decode
        from kiln.lm.generate import generate_text

        vocab = state.spec.class_names
        first = self.loader.dataset[0][0]
        prompt = decode(first[:PROMPT_CHARS], vocab)
        text = generate_text(
            state.model, vocab, prompt, SAMPLE_TOKENS, SAMPLE_TEMPERATURE, SAMPLE_TOP_K,
            seed=state.config.run.seed + state.global_step,
        )
        assert self.samples is not None
        self.samples.parent.mkdir(parents=True, exist_ok=True)
        with self.samples.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, "prompt": prompt, "text": text}) + "\n")


def drop_after(path: Path, step: int) -> None:
    """Keep only the samples of steps <= ``step`` (a resumed run rewrites the later ones)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if _sample_step(line) <= step]
    if len(kept) != len(lines):
        path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def _sample_step(line: str) -> float:
    """The step of one samples.jsonl line; a line cut short by a crash counts as after every step."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")
