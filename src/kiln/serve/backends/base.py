"""What every predictor answers in: float32 arrays, and probabilities made from raw outputs
(the rule lives in :mod:`kiln.models.answers`, which training's reference statistics share)."""

from __future__ import annotations

from kiln.models.answers import Array, to_probabilities

__all__ = ["Array", "to_probabilities"]
