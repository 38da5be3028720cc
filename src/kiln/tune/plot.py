"""The range test as a PNG: loss against learning rate (log scale), the suggestion marked.

matplotlib's object API (``Figure``), no pyplot: no global state, as kiln's other reports draw.
"""

from __future__ import annotations

import math
from pathlib import Path

from kiln.errors import MissingExtraError
from kiln.tune.lr_range import LRFinding


def plot_lr_finding(finding: LRFinding, path: Path) -> Path:
    """Draw ``finding`` into ``path`` (parents created); MissingExtraError without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("matplotlib", "report") from None
    fig = Figure(figsize=(7.0, 4.5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(finding.lrs, finding.losses, color="0.75", linewidth=1, label="loss")
    shown = [(lr, s) for lr, s in zip(finding.lrs, finding.smoothed, strict=True) if math.isfinite(s)]
    ax.plot([p[0] for p in shown], [p[1] for p in shown], color="C0", linewidth=2, label="smoothed loss")
    if finding.suggestion is not None:
        ax.axvline(finding.suggestion, color="C3", linestyle="--",
                   label=f"suggestion {finding.suggestion:.3g} (steepest descent)")
    ax.axvline(finding.min_loss_lr, color="0.4", linestyle=":", label=f"lowest loss at {finding.min_loss_lr:.3g}")
    finite = [s for _, s in shown]
    if finite:  # the divergence at the end would flatten the interesting part
        low, high = min(finite), finite[0]
        ax.set_ylim(low - 0.1 * abs(high - low) - 1e-12, max(high, low) + 0.2 * abs(high - low) + 1e-12)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"learning-rate range test (batch {finding.batch_size}, {len(finding.lrs)} steps: {finding.stopped})")
    ax.legend(loc="best", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
