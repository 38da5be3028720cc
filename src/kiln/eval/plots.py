"""Evaluation plots as PNG files: confusion matrix, training curves, worst-classified examples.

matplotlib is imported only here and only when a plot is drawn (``kiln eval --no-plots`` never
imports it). Figures are built with the object API (``matplotlib.figure.Figure``), which renders
with Agg and touches no pyplot global state, so plotting is safe in servers and threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from kiln.errors import MissingExtraError
from kiln.eval.history import History

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
ANNOTATE_MAX_CLASSES = 20  # beyond this, counts in cells are unreadable


def new_figure(width: float, height: float) -> Figure:
    """A figure of the reports' style (object API: no pyplot state, safe off the main thread), or
    MissingExtraError when matplotlib (the ``report`` extra) is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("matplotlib", "report") from None
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def confusion_png(confusion: npt.NDArray[np.int64], class_names: Sequence[str], path: Path, title: str) -> Path:
    """Counts per (true, predicted) class; cell colour is the share of the true class's row."""
    k = len(confusion)
    side = min(max(4.0, 0.45 * k + 2.0), 16.0)
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of true class")
    ticks = np.arange(k)
    ax.set_xticks(ticks, [str(c) for c in class_names], rotation=90 if k > 10 else 0)
    ax.set_yticks(ticks, [str(c) for c in class_names])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if k <= ANNOTATE_MAX_CLASSES:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.savefig(path)
    return path


def curves_png(history: History, path: Path, title: str) -> Path | None:
    """One panel per metric with its train_ and val_ curves (loss first), plus lr when it changes.

    Returns None when the history holds no epoch metrics to draw.
    """
    epochs = history.get("epoch") or list(range(1, 1 + max((len(v) for v in history.values()), default=0)))
    panels: dict[str, list[str]] = {}
    for key in history:
        for prefix in ("train_", "val_"):
            if key.startswith(prefix):
                panels.setdefault(key[len(prefix):], []).append(key)
    lr = history.get("lr", [])
    if len({v for v in lr if not math.isnan(v)}) > 1:
        panels["lr"] = ["lr"]
    if not panels or not epochs:
        return None
    names = sorted(panels, key=lambda n: (n != "loss", n == "lr", n))
    fig = new_figure(4.2 * len(names), 3.4)
    for i, name in enumerate(names, start=1):
        ax = fig.add_subplot(1, len(names), i)
        for key in panels[name]:
            ax.plot(epochs, history[key], marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path)
    return path


def examples_png(images: npt.NDArray[Any], captions: Sequence[str], path: Path, title: str,
                 stretch: bool = True) -> Path:
    """A grid of image samples ``(N, C, H, W)`` with one caption each (C is 1 or 3).

    ``stretch``: scale each image to its own range (for normalized inputs, whose units are not
    pixels); False draws pixels already in 0..1 as they are.
    """
    n = len(images)
    cols = min(n, 4)
    rows = max(1, math.ceil(n / cols))
    lines = max((c.count("\n") + 1 for c in captions), default=1)
    fig = new_figure(2.2 * cols, (2.2 + 0.2 * lines) * rows + 0.4)
    for i, (image, caption) in enumerate(zip(images, captions, strict=True), start=1):
        ax = fig.add_subplot(rows, cols, i)
        shown = _displayable(image) if stretch else _channels_last(np.clip(np.asarray(image, dtype=np.float64), 0, 1))
        ax.imshow(shown, cmap="gray" if image.shape[0] == 1 else None, vmin=0.0, vmax=1.0)
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    fig.suptitle(title)
    fig.savefig(path)
    return path


def _displayable(image: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """CHW (normalized) to HW or HWC in [0, 1], scaled per image: contrast matters, not units."""
    data = np.asarray(image, dtype=np.float64)
    low, high = data.min(), data.max()
    data = (data - low) / (high - low) if high > low else np.zeros_like(data)
    return _channels_last(data)


def _channels_last(data: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """CHW to HW (one channel) or HWC, as imshow takes them."""
    shown: npt.NDArray[np.float64] = data[0] if data.shape[0] == 1 else np.transpose(data, (1, 2, 0))
    return shown
