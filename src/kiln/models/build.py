"""Build the configured model: a catalog entry, or the user's own by import path or as an object."""

from __future__ import annotations

import inspect

from torch import nn

from kiln.catalog import import_object
from kiln.config.schema import ModelConfig
from kiln.data.spec import DataSpec
from kiln.errors import ModelError
from kiln.models.catalog import MODELS


def build_model(cfg: ModelConfig, spec: DataSpec) -> nn.Module:
    """Return a fresh ``nn.Module`` for ``cfg`` and the data described by ``spec``.

    With ``cfg.target`` kiln calls ``target(**cfg.options)``; when the factory (or class) has a
    parameter named ``spec`` it also receives the DataSpec, so it can size its input and output.
    """
    if cfg.target is None:
        return MODELS.get(cfg.name)(cfg, spec)
    factory = import_object(cfg.target, "model")
    if not callable(factory):
        raise ModelError(f"model.target {cfg.target!r} is not callable: {type(factory).__name__}")
    kwargs = dict(cfg.options)
    if _accepts(factory, "spec"):
        kwargs["spec"] = spec
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise ModelError(
            f"calling model.target {cfg.target!r} with options {sorted(cfg.options)} failed: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model.target {cfg.target!r} returned {type(model).__name__}, expected a torch.nn.Module"
        )
    return model


def _accepts(factory: object, name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
