"""Typed configuration: schema, loading with ``extends:`` and overrides, validation."""

from kiln.config.data_options import DataConfig, TargetData
from kiln.config.entries import parse_data_config, parse_model_config
from kiln.config.loader import config_hash, load_config, to_yaml, validate
from kiln.config.model_options import ModelConfig, TargetModel
from kiln.config.schema import KilnConfig, RunConfig, TrackingConfig, TrainingConfig

__all__ = [
    "DataConfig",
    "KilnConfig",
    "ModelConfig",
    "RunConfig",
    "TargetData",
    "TargetModel",
    "TrackingConfig",
    "TrainingConfig",
    "config_hash",
    "load_config",
    "parse_data_config",
    "parse_model_config",
    "to_yaml",
    "validate",
]
