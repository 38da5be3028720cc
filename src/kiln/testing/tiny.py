"""A config that trains in about a second: digits, a one-layer MLP, two epochs, no progress bar."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kiln.config.loader import load_config
from kiln.config.schema import KilnConfig

TINY_OVERRIDES: tuple[str, ...] = (
    "run.name=tiny",
    "run.progress=false",
    "run.deterministic=true",
    "data.name=digits",
    "model.name=mlp",
    "model.hidden=[16]",
    "training.epochs=2",
    "training.batch_size=64",
    "training.lr=0.01",
)


def tiny_config(output_dir: Path, *overrides: str, backends: Sequence[str] = ("jsonl", "csv")) -> KilnConfig:
    """The tiny config writing runs under ``output_dir``; ``overrides`` are applied last.

    TensorBoard is off by default here because importing it costs about a second.
    """
    return load_config(
        None,
        [
            *TINY_OVERRIDES,
            f"run.output_dir={output_dir}",
            f"tracking.backends={list(backends)}",
            *overrides,
        ],
    )
