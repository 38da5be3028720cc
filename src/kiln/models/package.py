"""The model package in ``<run>/models/``: weights (safetensors) plus ``model.json``, enough to rebuild.

``load_package(path)`` accepts a run directory, its ``models/`` directory or a ``model.json`` on
this machine. A registry URI (``models:/NAME@ALIAS``) is resolved a layer up, by
``kiln.registry.load`` (what ``kiln.load_model`` is): the registry reads packages, so a package
cannot read the registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from kiln.config.entries import parse_model_config
from kiln.config.model_options import ModelConfig
from kiln.data.spec import DataSpec
from kiln.errors import ModelError, PathError

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "model.json"


@dataclass(frozen=True)
class ModelPackage:
    """A loaded package: the ready model (eval mode), its data spec and the raw metadata."""

    model: nn.Module
    spec: DataSpec
    meta: dict[str, Any]


def save_model_package(
    directory: Path, model: nn.Module, model_cfg: ModelConfig, spec: DataSpec, extra: dict[str, Any]
) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory``; returns model.json's path."""
    from safetensors.torch import save_file

    from kiln._files import write_json
    from kiln._version import __version__
    from kiln.models.build import count_parameters

    directory.mkdir(parents=True, exist_ok=True)
    # a copy per tensor: tied weights (one tensor under two names) are refused by safetensors
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS), metadata={"format": "pt"})
    meta = {
        "format_version": FORMAT_VERSION,
        "kiln_version": __version__,
        "model": model_cfg.model_dump(mode="json"),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "data_spec": spec.to_dict(),
        "task": spec.task,
        "class_names": list(spec.class_names),
        "input_signature": {"shape": [None, *spec.input_shape], "dtype": spec.input_dtype},
        "output_size": spec.output_size,
        "parameters": count_parameters(model),
        **extra,
    }
    write_json(directory / META, meta)
    return directory / META


def resolve_package_dir(path: str | Path) -> Path:
    """The ``models/`` directory for a run dir, models dir or model.json path on this machine."""
    if str(path).startswith("models:/"):
        raise ModelError(
            f"{path} is a registry URI, and kiln.models.package reads local packages only: "
            "load it with kiln.load_model or kiln.registry.load.load_package"
        )
    p = Path(path)
    for candidate in (p / "models", p, p.parent):
        if (candidate / META).is_file():
            return candidate
    if not p.exists():  # a path the user typed that is not what is needed: a usage error (exit 2)
        raise PathError(f"{p} does not exist: pass a run directory (runs/<name>_<time>/)")
    raise PathError(
        f"no model package at {p}: expected {p / 'models' / META}. "
        "Is this a run directory of a finished kiln run?"
    )


def read_meta(directory: Path) -> dict[str, Any]:
    """A package's ``model.json``, refused when damaged or written by a newer kiln."""
    try:
        meta: dict[str, Any] = json.loads((directory / META).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{directory / META} is not valid JSON ({exc}); the package is damaged") from None
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(
            f"{directory / META} has format version {meta['format_version']}, newer than this "
            f"kiln understands ({FORMAT_VERSION}); upgrade kiln"
        )
    return meta


def load_package(path: str | Path, model: nn.Module | None = None) -> ModelPackage:
    """Rebuild the model of a package and load its weights.

    ``model`` supplies the architecture for packages whose model was passed to kiln as an object
    (kiln cannot rebuild those from config alone).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from kiln.models.build import build_model

    directory = resolve_package_dir(path)
    meta = read_meta(directory)
    spec = DataSpec.from_dict(meta["data_spec"])
    if model is None:
        if meta.get("source") == "object":
            raise ModelError(
                f"the model in {directory} was passed to kiln as an object, so its architecture "
                "is not in the config: call load_model(path, model=YourModel(...))"
            )
        model = build_model(parse_model_config(meta["model"]).for_loading(), spec)
    try:
        state = load_file(str(directory / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"cannot read weights {directory / WEIGHTS}: {exc}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"weights in {directory / WEIGHTS} do not fit the model: {exc}") from None
    model.eval()
    return ModelPackage(model, spec, meta)
