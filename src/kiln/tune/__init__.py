"""Finders that leave no trace: the learning-rate range test and the largest batch that fits.

Both train a copy of a run's model and optimizer and put every RNG back, so the objects they are
given are bit for bit unchanged; ``write_applied`` writes a suggestion into a new config file.

>>> from kiln.config import load_config
>>> bench = build_workbench(load_config("configs/digits_mlp.yaml"))  # doctest: +SKIP
>>> lr_range_test(bench, steps=60).suggestion  # doctest: +SKIP
"""

from __future__ import annotations

from kiln.tune.apply import write_applied
from kiln.tune.batch_size import BatchFinding, find_batch_size
from kiln.tune.lr_range import LRFinding, lr_range_test
from kiln.tune.plot import plot_lr_finding
from kiln.tune.workbench import Workbench, build_workbench, isolated

__all__ = [
    "BatchFinding",
    "LRFinding",
    "Workbench",
    "build_workbench",
    "find_batch_size",
    "isolated",
    "lr_range_test",
    "plot_lr_finding",
    "write_applied",
]
