"""kiln: a production training pipeline for PyTorch. One config in, one trustworthy run out.

The public API is listed in ``__all__``. Names are imported on first use (PEP 562) so that
``import kiln`` and ``kiln --help`` stay fast: torch is only imported when it is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln._lazy import lazy_exports
from kiln._version import __version__

if TYPE_CHECKING:
    from kiln.batch_predict import predict
    from kiln.config import KilnConfig, load_config
    from kiln.data import DataBundle, DataSpec
    from kiln.errors import ConfigError, KilnError, TrainingInterrupted
    from kiln.registry.load import load_model
    from kiln.runs import RunDir, RunSummary
    from kiln.train import Callback, Event, FitResult, Trainer, TrainState
    from kiln.train.resume_run import resume

_PUBLIC = {
    "KilnConfig": "kiln.config",
    "load_config": "kiln.config",
    "DataBundle": "kiln.data",
    "DataSpec": "kiln.data",
    "ConfigError": "kiln.errors",
    "KilnError": "kiln.errors",
    "TrainingInterrupted": "kiln.errors",
    "load_model": "kiln.registry.load",
    "predict": "kiln.batch_predict",
    "RunDir": "kiln.runs",
    "RunSummary": "kiln.runs",
    "Callback": "kiln.train",
    "Event": "kiln.train",
    "FitResult": "kiln.train",
    "TrainState": "kiln.train",
    "Trainer": "kiln.train",
    "resume": "kiln.train.resume_run",
}

__all__ = [
    "Callback",
    "ConfigError",
    "DataBundle",
    "DataSpec",
    "Event",
    "FitResult",
    "KilnConfig",
    "KilnError",
    "RunDir",
    "RunSummary",
    "TrainState",
    "Trainer",
    "TrainingInterrupted",
    "__version__",
    "load_config",
    "load_model",
    "predict",
    "resume",
]


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, __all__)
