"""What several serve tests compute the same way: the expected answer and metric values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from prometheus_client.parser import text_string_to_metric_families

import kiln
from kiln.models.package import load_package


def expected_probabilities(run: Path, raw: np.ndarray) -> np.ndarray:
    """What the server should answer for ``raw`` inputs: ``kiln.load_model``'s softmax of the
    inputs normalized with the run's statistics (the server normalizes, as training did)."""
    spec = load_package(run).spec
    x = (raw.reshape(len(raw), *spec.input_shape) - np.asarray(spec.mean)) / np.asarray(spec.std)
    model = kiln.load_model(run)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.astype(np.float32)))
    return torch.softmax(logits, dim=1).numpy()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def digits_inputs(n: int, seed: int = 0) -> np.ndarray:
    """``n`` raw digit-like inputs in 0..1 (the dataset's units before normalization)."""
    return np.random.default_rng(seed).random((n, 1, 8, 8))
