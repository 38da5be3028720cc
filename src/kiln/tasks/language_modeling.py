"""Next-token prediction: cross-entropy over every position of every window.

Outputs are logits ``[batch, seq, vocab]`` and targets token ids ``[batch, seq]``. Metrics are the
mean loss per token (nats) and its perplexity ``exp(loss)``; uniform guessing scores ``log(vocab)``
and a perplexity of ``vocab``. Tokens per second are measured by the loop around the task, since a
meter sees no clock.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kiln.config.schema import LossConfig
from kiln.data.spec import DataSpec
from kiln.errors import ConfigError
from kiln.tasks.meters import Sums


class LanguageModelingMeter(Sums):
    """Token-weighted mean loss, perplexity and next-token accuracy; ``count`` counts windows."""

    def __init__(self) -> None:
        super().__init__("loss", "correct", "tokens")

    def update(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        tokens = targets.numel()
        self.add("loss", loss, weight=tokens)
        self.add("correct", (outputs.detach().argmax(dim=-1) == targets).sum())
        self.add("tokens", torch.tensor(tokens, device=targets.device))
        self.count += targets.shape[0]

    def compute(self) -> dict[str, float]:
        if "tokens" not in self.sums:
            return {"loss": float("nan"), "perplexity": float("nan"), "accuracy": float("nan")}
        tokens = float(self.sums["tokens"].item())
        loss = float(self.sums["loss"].item()) / tokens
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),  # exp overflows a float past ~709
            "accuracy": float(self.sums["correct"].item()) / tokens,
        }


class LanguageModelingTask:
    """Batches are ``(ids, next_ids)``; the loss is token-level cross-entropy."""

    def __init__(self, spec: DataSpec, loss_cfg: LossConfig) -> None:
        if loss_cfg.name not in ("auto", "cross_entropy") or loss_cfg.class_weights is not None:
            raise ConfigError(
                "language modeling trains with training.loss.name cross_entropy (or auto) and no "
                f"class_weights; got name={loss_cfg.name!r}, class_weights={loss_cfg.class_weights}"
            )
        self.spec = spec
        self.label_smoothing = loss_cfg.label_smoothing

    @property
    def name(self) -> str:
        return "language_modeling"

    def split_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        return batch[0], batch[1]

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(
            outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1),
            label_smoothing=self.label_smoothing,
        )

    def meter(self) -> LanguageModelingMeter:
        return LanguageModelingMeter()

    def predict(self, outputs: Tensor) -> Tensor:
        return outputs.argmax(dim=-1)

    def to(self, device: torch.device) -> LanguageModelingTask:
        return self
