"""Hyperparameter sweeps: many kiln runs chosen by Optuna, shared through an Optuna storage.

>>> from kiln.sweep import run_sweep
>>> outcome = run_sweep("configs/digits_mlp.yaml", "configs/sweeps/digits_grid.yaml")  # doctest: +SKIP
>>> outcome.report.best  # doctest: +SKIP

Modules: ``spec`` (the sweep file), ``paths`` (its parameters checked against the config schema),
``study`` (storage, sampler, pruner), ``objective`` (one trial = one run), ``trials`` (what each
trial is, the budget), ``loop`` (one worker), ``workers`` (N local worker processes),
``mlflow_parent`` (the parent MLflow run), ``report`` and ``plots`` (results), ``runner`` (all of it).
Importing this package imports neither torch, Optuna nor MLflow.
"""

from __future__ import annotations

from kiln.errors import SweepError
from kiln.sweep.context import SweepContext
from kiln.sweep.report import SweepReport
from kiln.sweep.runner import SweepOutcome, open_report, prepare_sweep, run_sweep
from kiln.sweep.spec import ParameterSpec, SweepSpec, load_sweep, parse_sweep

__all__ = [
    "ParameterSpec",
    "SweepContext",
    "SweepError",
    "SweepOutcome",
    "SweepReport",
    "SweepSpec",
    "load_sweep",
    "open_report",
    "parse_sweep",
    "prepare_sweep",
    "run_sweep",
]
