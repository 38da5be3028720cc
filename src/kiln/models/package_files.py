"""Where a model package is and what its ``model.json`` says, without importing torch.

Serving an ONNX export and ``kiln predict`` with ONNX Runtime need only these: keeping them apart
from ``kiln.models.package`` (which rebuilds the ``nn.Module``) spares such a process the second
and more that importing torch costs, and lets a serving image leave torch out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kiln.errors import ModelError, PathError

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "model.json"


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
