"""Models: a named catalog of factories, plus the user's own ``nn.Module`` by import path."""

from kiln.models.catalog import MODELS, ModelFactory

__all__ = ["MODELS", "ModelFactory"]
