"""What the prediction log keeps of each input: a compact summary, never the raw input by default.

Tabular (and any non-image) models: the first ``max_features`` values of the flattened instance.
Image models (shape ``(channels, height, width)`` with 1 or 3 channels): each channel's mean and
standard deviation. Both in the dataset's units (what a client sends to ``/predict``, before the
server's normalization), so an exported log reads like the requests and compares with the
training data as it was. ``--log-inputs`` adds the whole instance in the same units.

The summaries are computed on the writer thread, off the request path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_FEATURES = 64


@dataclass(frozen=True)
class InputSummary:
    """Summaries of batches of one model's (normalized) inputs.

    ``mean`` and ``std`` are the normalization the server applied (arrays broadcastable to
    ``shape``), undone here; ``image`` picks per-channel statistics over per-feature values.

    >>> s = InputSummary((3,), np.zeros(3), np.ones(3), image=False)
    >>> s.rows(np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    [{'feature': [1.0, 2.0, 3.0]}]
    """

    shape: tuple[int, ...]
    mean: Any
    std: Any
    image: bool
    max_features: int = MAX_FEATURES

    def raw(self, batch: Any) -> Any:
        """The batch back in dataset units, float32."""
        return (np.asarray(batch, dtype=np.float64) * self.std + self.mean).astype(np.float32)

    def rows(self, batch: Any) -> list[dict[str, list[float]]]:
        """One summary per instance of ``batch`` (normalized, of the model's input shape)."""
        n = len(batch)
        if self.image:
            raw = self.raw(batch).reshape(n, self.shape[0], -1)
            means, stds = raw.mean(axis=2), raw.std(axis=2)
            return [{"channel_mean": m.tolist(), "channel_std": s.tolist()} for m, s in zip(means, stds, strict=True)]
        flat = np.asarray(batch).reshape(n, -1)[:, :self.max_features]
        mean = np.broadcast_to(self.mean, self.shape).reshape(-1)[:self.max_features]
        std = np.broadcast_to(self.std, self.shape).reshape(-1)[:self.max_features]
        values = (flat.astype(np.float64) * std + mean).astype(np.float32)
        return [{"feature": row.tolist()} for row in values]
