"""What a served model answers, made from its raw outputs: probabilities per class (softmax;
for a binary model, the negative and positive class from one sigmoid), or the value itself for
regression. NumPy only, one rule for the server's backends and for training's reference
statistics (``kiln.train.reference``), so drift compares like with like."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]


def to_probabilities(outputs: Array, task: str) -> Array:
    """Raw model outputs (logits) to what the API answers, per the task."""
    outputs = outputs.reshape(len(outputs), -1).astype(np.float32, copy=False)
    if task == "classification":
        shifted = outputs - outputs.max(axis=1, keepdims=True)  # no overflow for large logits
        exp = np.exp(shifted)
        probs: Array = exp / exp.sum(axis=1, keepdims=True)
        return probs
    if task == "binary":
        positive = 1.0 / (1.0 + np.exp(-outputs[:, :1]))
        return np.concatenate([1.0 - positive, positive], axis=1).astype(np.float32)
    return outputs
