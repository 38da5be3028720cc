"""Models: a named catalog of builders, plus the user's own ``nn.Module`` by import path."""

from kiln.models.catalog import MODELS

__all__ = ["MODELS"]
