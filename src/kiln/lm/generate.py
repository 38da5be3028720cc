"""Autoregressive sampling: temperature, top-k, and a seeded generator of its own.

Sampling draws from a private ``torch.Generator``, never from torch's global RNG: the same seed
gives the same text, and sampling during training (samples at each evaluation) leaves the
training run's random stream untouched, so resume stays bit-exact.

>>> text = sample_from_package("runs/char_transformer_20261123_101500", "ROMEO:", seed=1)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from kiln.errors import DataError, UsageError


@torch.no_grad()
def generate(
    model: nn.Module, ids: Tensor, max_new_tokens: int, temperature: float, top_k: int | None,
    generator: torch.Generator, block_size: int,
) -> Tensor:
    """Extend ``ids`` (``[seq]`` token ids) by ``max_new_tokens`` sampled tokens.

    The context is cropped to the last ``block_size`` tokens. ``temperature`` 0 is greedy.
    """
    was_training = model.training
    model.eval()
    try:
        out = ids.reshape(1, -1)
        for _ in range(max_new_tokens):
            logits = model(out[:, -block_size:])[0, -1].float()
            if temperature == 0:
                nxt = logits.argmax().reshape(1)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.numel():
                    kth = torch.topk(logits, top_k).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            out = torch.cat([out, nxt.reshape(1, 1).to(out.device)], dim=1)
    finally:
        model.train(was_training)
    return out[0]


def generate_text(
    model: nn.Module, vocab: tuple[str, ...], prompt: str, max_new_tokens: int = 200,
    temperature: float = 0.8, top_k: int | None = 40, seed: int = 1, block_size: int | None = None,
) -> str:
    """``prompt`` followed by ``max_new_tokens`` sampled characters; UsageError on bad arguments."""
    from kiln.data.text import decode, encode

    problems = []
    if not prompt:
        problems.append("the prompt is empty; give at least one character, e.g. --prompt 'ROMEO:'")
    if max_new_tokens < 0:
        problems.append(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not math.isfinite(temperature) or temperature < 0:
        problems.append(f"temperature must be >= 0 (0: greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        problems.append(f"top_k must be >= 1, got {top_k}")
    if problems:
        raise UsageError("; ".join(problems))
    try:
        ids = encode(prompt, vocab, "the prompt")
    except DataError as exc:
        raise UsageError(str(exc)) from None
    context = block_size or int(getattr(model, "block_size", len(ids)))
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    out = generate(model, ids.to(device), max_new_tokens, temperature, top_k, generator, context)
    return decode(out.cpu(), vocab)


def sample_from_package(
    path: str | Path, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
    top_k: int | None = 40, seed: int = 1,
) -> str:
    """Load a run's model package (run dir, ``models/`` or ``models:/`` URI) and sample from it."""
    from kiln.registry.load import load_package

    package = load_package(path)
    if package.spec.task != "language_modeling":
        raise UsageError(
            f"{path} holds a {package.spec.task} model; kiln generate needs a language model "
            "(data.name text, model.name transformer)"
        )
    return generate_text(
        package.model, package.spec.class_names, prompt, max_new_tokens, temperature, top_k, seed
    )
