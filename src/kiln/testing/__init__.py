"""Helpers for testing kiln and code built on it: tiny, fast configs and a tiny model."""

from kiln.testing.tiny import TINY_OVERRIDES, tiny_config

__all__ = ["TINY_OVERRIDES", "tiny_config"]
