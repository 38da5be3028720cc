"""Helpers for testing kiln and code built on it: tiny, fast configs, and the contract suites a
plugin keeps (``DatasetContract``, ``ModelContract``, ``TrackerContract``, ``ExporterContract``).

The contracts are imported on first use (PEP 562): they import torch (ExporterContract, pytest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln._lazy import lazy_exports
from kiln.testing.tiny import TINY_OVERRIDES, tiny_config

if TYPE_CHECKING:
    from kiln.testing.dataset_contract import DatasetContract, check_dataset
    from kiln.testing.exporter_contract import ExporterContract
    from kiln.testing.model_contract import ModelContract, check_model
    from kiln.testing.tracker_contract import TrackerContract, check_tracker

_LAZY = {
    "DatasetContract": "kiln.testing.dataset_contract",
    "check_dataset": "kiln.testing.dataset_contract",
    "ModelContract": "kiln.testing.model_contract",
    "check_model": "kiln.testing.model_contract",
    "TrackerContract": "kiln.testing.tracker_contract",
    "check_tracker": "kiln.testing.tracker_contract",
    "ExporterContract": "kiln.testing.exporter_contract",
}

__all__ = [
    "TINY_OVERRIDES",
    "DatasetContract",
    "ExporterContract",
    "ModelContract",
    "TrackerContract",
    "check_dataset",
    "check_model",
    "check_tracker",
    "tiny_config",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
