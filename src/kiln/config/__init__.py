"""Typed configuration: schema, loading with ``extends:`` and overrides, validation."""

from kiln.config.loader import config_hash, load_config, to_yaml, validate
from kiln.config.schema import (
    DataConfig,
    KilnConfig,
    ModelConfig,
    RunConfig,
    TrackingConfig,
    TrainingConfig,
)

__all__ = [
    "DataConfig",
    "KilnConfig",
    "ModelConfig",
    "RunConfig",
    "TrackingConfig",
    "TrainingConfig",
    "config_hash",
    "load_config",
    "to_yaml",
    "validate",
]
