"""The model package in ``<run>/models/``: weights (safetensors) plus ``model.json``, enough to rebuild.

``load_package(path)`` accepts a run directory, its ``models/`` directory or a ``model.json`` on
this machine. A registry URI (``models:/NAME@ALIAS``) is resolved a layer up, by
``kiln.registry.load`` (what ``kiln.load_model`` is): the registry reads packages, so a package
cannot read the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from kiln.config.entries import parse_model_config
from kiln.config.model_options import ModelConfig
from kiln.data.spec import DataSpec
from kiln.errors import ModelError
from kiln.models.package_files import FORMAT_VERSION, META, WEIGHTS, read_meta, resolve_package_dir

__all__ = ["FORMAT_VERSION", "META", "WEIGHTS", "ModelPackage", "load_package", "read_meta",
           "resolve_package_dir", "save_model_package"]


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
