"""The monitor report's plots: training's share of each bin beside live traffic's, as PNG bytes.

matplotlib's object API (:func:`kiln.eval.plots.new_figure`), imported only when a report is
drawn; never by the server.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence

import numpy as np

from kiln.eval.plots import new_figure
from kiln.models.reference import Bins
from kiln.monitor.drift import THRESHOLD

PANELS_PER_ROW = 4
TRAINING, LIVE = "#4c72b0", "#dd8452"


def bin_labels(bins: Bins) -> list[str]:
    """``<a``, ``a to b``, ..., ``>=z`` for the bins between ``bins.edges``."""
    e = [f"{v:.3g}" for v in bins.edges]
    if not e:
        return ["all"]
    return [f"<{e[0]}", *(f"{a} to {b}" for a, b in itertools.pairwise(e)), f">={e[-1]}"]


def comparison_png(panels: Sequence[tuple[str, list[str], Sequence[float], Sequence[float], float | None]],
                   title: str) -> bytes:
    """A grid of bar charts, one per ``(name, bin labels, training shares, live shares, PSI)``."""
    cols = min(len(panels), PANELS_PER_ROW)
    rows = -(-len(panels) // cols)
    fig = new_figure(3.6 * cols, 2.9 * rows + 0.5)
    for i, (name, labels, training, live, value) in enumerate(panels, start=1):
        ax = fig.add_subplot(rows, cols, i)
        x = np.arange(len(labels))
        ax.bar(x - 0.2, training, width=0.4, color=TRAINING, label="training")
        ax.bar(x + 0.2, live, width=0.4, color=LIVE, label="live")
        ax.set_xticks(x, labels, rotation=60 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center",
                      fontsize=6)
        psi = "PSI -" if value is None else f"PSI {value:.3f}"
        drifted = value is not None and value > THRESHOLD
        ax.set_title(f"{name}\n{psi}", fontsize=8, color="#b00020" if drifted else "black")
        ax.set_ylabel("share", fontsize=7)
        ax.tick_params(axis="y", labelsize=6)
        if i == 1:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
