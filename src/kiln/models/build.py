"""Build the configured model: a catalog entry, or the user's own by import path or as an object.

A catalog entry's factory receives its validated options model and the DataSpec. A user's own model
is named by ``model.target``: a class or factory called with ``model.options`` as keyword
arguments, or a ``kiln.catalog.Entry`` with an options model, called like a catalog entry.
"""

from __future__ import annotations

import inspect

from torch import nn

from kiln.catalog import Entry, import_object
from kiln.config.loader import validate_options
from kiln.config.model_options import ModelConfig, TargetModel
from kiln.data.spec import DataSpec
from kiln.errors import ModelError
from kiln.models.catalog import MODELS


def build_model(cfg: ModelConfig, spec: DataSpec) -> nn.Module:
    """Return a fresh ``nn.Module`` for ``cfg`` and the data described by ``spec``.

    With ``cfg.target`` kiln calls ``target(**cfg.options)``; when the factory (or class) has a
    parameter named ``spec`` it also receives the DataSpec, so it can size its input and output.
    """
    if not isinstance(cfg, TargetModel):
        return MODELS.get(cfg.name)(cfg, spec)
    factory = import_object(cfg.target, "model")
    if isinstance(factory, Entry) and factory.options is not None:  # a plugin with typed options
        options = validate_options(factory.options, cfg.options, "model.options")
        return _module(factory.load()(options, spec), cfg.target)
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
    return _module(model, cfg.target)


def _module(model: object, target: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model.target {target!r} returned {type(model).__name__}, expected a torch.nn.Module"
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
