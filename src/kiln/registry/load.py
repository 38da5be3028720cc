"""Loading a model package from wherever it is named: a run directory, its ``models/``, a
``model.json``, or a registry URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``).

``kiln.models.package`` reads packages on this machine; URIs are resolved here, a layer above it,
because resolving one asks the registry, and the registry sits above the models it registers.
Everything that accepts a URI (``kiln.load_model``, eval, export, generate) loads through here.

>>> model = load_model("models:/digits@production")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from kiln.models import package
from kiln.models.package import ModelPackage
from kiln.registry.resolve import is_model_uri, resolve_model_uri


def resolve_package_dir(path: str | Path) -> Path:
    """The ``models/`` directory for a run dir, models dir, model.json path or registry URI."""
    if is_model_uri(path):
        return resolve_model_uri(str(path)).package_dir
    return package.resolve_package_dir(path)


def load_package(path: str | Path, model: nn.Module | None = None) -> ModelPackage:
    """The rebuilt model (eval mode), its data spec and metadata; see ``kiln.models.package``.

    ``model`` supplies the architecture for packages whose model was passed to kiln as an object.
    """
    return package.load_package(resolve_package_dir(path), model)


def load_model(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """A ready ``nn.Module`` (eval mode) from a run directory, model package or ``models:/`` URI.

    >>> model = load_model("runs/digits_mlp_20261123_101500")  # doctest: +SKIP
    """
    return load_package(path, model).model
