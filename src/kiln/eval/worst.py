"""The samples a classifier missed worst, as a PNG grid: what to look at first after the metrics.

"Worst" is the highest loss on the true class (the lowest probability the model gave it), so a
confident mistake ranks above a hesitant one, and when the split has fewer mistakes than the grid
has cells, the least sure correct answers fill the rest. Each cell names the true and predicted
class, and the file for data read from files (``image_folder``).

Images with a saved preprocessing (``DataSpec.extra["preprocess"]``) are drawn as the model saw
them, un-normalized with the package's own mean and std, so colours are the photo's; older image
datasets (digits, MNIST) are contrast-stretched per image, since their units are not pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kiln.data.images.preprocess import Preprocessing
from kiln.data.spec import DataSpec
from kiln.eval.metrics import per_sample_loss, probabilities

WORST_EXAMPLES = 16


@dataclass(frozen=True)
class Miss:
    """One sample of the grid: its index in the split, classes and probabilities, and its file."""

    index: int
    true: int
    predicted: int
    p_true: float
    p_predicted: float
    file: str | None = None

    def caption(self, names: Sequence[str]) -> str:
        where = Path(self.file).name if self.file else f"#{self.index}"
        return (f"{where}\ntrue {names[self.true]} ({self.p_true:.2f})\n"
                f"predicted {names[self.predicted]} ({self.p_predicted:.2f})")


def worst_samples(outputs: npt.NDArray[np.floating[Any]], targets: npt.NDArray[Any], task: str,
                  files: Sequence[Any] | None = None, count: int = WORST_EXAMPLES) -> list[Miss]:
    """The ``count`` samples with the highest loss, worst first (ties in split order)."""
    losses = per_sample_loss(outputs, targets, task)
    probs = probabilities(outputs, task)
    order = np.argsort(-losses, kind="stable")[:count]
    misses = []
    for i in (int(i) for i in order):
        true, predicted = int(targets[i]), int(probs[i].argmax())
        misses.append(Miss(i, true, predicted, float(probs[i, true]), float(probs[i, predicted]),
                           None if files is None else str(files[i])))
    return misses


def is_image_spec(spec: DataSpec) -> bool:
    """Whether samples are images a grid can show: ``[C, H, W]`` with 1 or 3 channels."""
    return len(spec.input_shape) == 3 and spec.input_shape[0] in (1, 3)


def worst_png(misses: Sequence[Miss], dataset: Any, names: Sequence[str], path: Path, title: str,
              preprocessing: Preprocessing | None = None) -> Path:
    """Draw ``misses`` (their inputs read back from ``dataset``) as a captioned grid at ``path``;
    ``preprocessing``, the one the inputs were made with, un-normalizes them to pixels."""
    from kiln.eval.plots import examples_png

    inputs = np.stack([np.asarray(dataset[m.index][0], dtype=np.float64) for m in misses])
    captions = [m.caption(names) for m in misses]
    if preprocessing is None:
        return examples_png(inputs, captions, path, title)
    return examples_png(unnormalize(inputs, preprocessing), captions, path, title, stretch=False)


def unnormalize(inputs: npt.NDArray[np.float64], preprocessing: Preprocessing) -> npt.NDArray[np.float64]:
    """Model inputs ``[N, C, H, W]`` back to pixels in 0..1: ``x * std + mean``, per channel."""
    channels = inputs.shape[1]
    mean = np.resize(np.asarray(preprocessing.mean, dtype=np.float64), channels).reshape(1, channels, 1, 1)
    std = np.resize(np.asarray(preprocessing.std, dtype=np.float64), channels).reshape(1, channels, 1, 1)
    pixels: npt.NDArray[np.float64] = np.clip(inputs * std + mean, 0.0, 1.0)
    return pixels
