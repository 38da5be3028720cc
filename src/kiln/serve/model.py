"""What ``kiln serve`` serves: a model package, found from a run, a registry URI or an export file.

``prepare_model`` does everything that may write or take time once, in the parent process (resolve
a ``models:/`` URI, create the ONNX export when the run has none, refuse an export whose parity
was not verified: :mod:`kiln.serve.verify`), and returns a picklable ``ModelSource``;
``load_served_model`` then builds the backend from it in each worker.

>>> served = load_served_model(prepare_model("runs/digits_mlp_20261123_101500"))  # doctest: +SKIP
>>> served.backend.name  # doctest: +SKIP
'onnx'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.catalog import did_you_mean
from kiln.data.spec import DataSpec
from kiln.errors import ServeError, exception_line
from kiln.serve.backends import DEFAULT_BACKEND, SERVE_BACKENDS, Predictor, ServeBackend
from kiln.serve.verify import ExportParity, check_export, require_verified

log = logging.getLogger("kiln.serve")


@dataclass(frozen=True)
class ModelSource:
    """Where the model is and how to run it, resolved once (plain data, so workers can get it)."""

    package_dir: Path
    backend: str  # a SERVE_BACKENDS name
    name: str
    version: str
    export_file: Path | None = None  # the export the backend runs (None: the package itself)
    registry: dict[str, Any] = field(default_factory=dict)  # name, version, run id of a models:/ URI
    parity: ExportParity | None = None  # the verdict on export_file (None: not checked yet)
    allow_unverified: bool = False  # served even when parity is not verified (--allow-unverified)


@dataclass(frozen=True)
class ServedModel:
    """A loaded model: its predictor, data spec and what ``/metadata`` reports."""

    source: ModelSource
    spec: DataSpec
    backend: Predictor
    meta: dict[str, Any]
    export_record: dict[str, Any] | None
    parity: ExportParity


def serve_backend(name: str) -> ServeBackend:
    """The SERVE_BACKENDS entry ``name``; ServeError naming the allowed ones otherwise."""
    if name not in SERVE_BACKENDS:
        allowed = SERVE_BACKENDS.names()
        raise ServeError(f"unknown backend {name!r}; allowed: {', '.join(allowed)}.{did_you_mean(name, allowed)}")
    return SERVE_BACKENDS.build(name)


def prepare_model(source: str | Path, backend: str | None = None, *,
                  allow_unverified: bool = False) -> ModelSource:
    """Resolve ``source`` and make sure the chosen backend has what it needs.

    ``backend`` None means ONNX Runtime: the run's ONNX export when it has one, else one created
    now with ``kiln export``'s code (parity-checked, recorded in ``exports.json``). An export
    whose parity record failed, is missing or no longer matches the file is refused (ServeError)
    unless ``allow_unverified``; the torch backend runs the reference itself and is never refused.
    """
    from kiln.models.package_files import resolve_package_dir

    chosen = backend or DEFAULT_BACKEND
    runtime = serve_backend(chosen)
    text = str(source)
    registry: dict[str, Any] = {}
    if text.startswith("models:/"):
        from kiln.registry.resolve import resolve_model_uri

        resolved = resolve_model_uri(text)
        package_dir = resolved.package_dir
        registry = {"uri": text, "name": resolved.name, "version": resolved.version, "run_id": resolved.run_id}
        name, version = resolved.name, str(resolved.version)
    else:
        package_dir = resolve_package_dir(source)
        name, version = _local_name(package_dir), "local"
    _refuse_language_models(package_dir)
    given = Path(text) if Path(text).is_file() else None  # a file named on the command line
    export_file = runtime.prepare(package_dir, given)
    parity = check_export(package_dir, export_file)
    require_verified(parity, package_dir, allow_unverified)
    return ModelSource(package_dir.resolve(), chosen, name, version, export_file, registry, parity,
                       allow_unverified)


def load_served_model(source: ModelSource, threads: int | None = None) -> ServedModel:
    """Read the package's metadata and load its backend (the model is not warmed up yet).

    ``threads``: intra-op threads of the runtime (None: the backend's default; ONNX Runtime's is 1,
    torch's setting is process-wide and left alone). The CLI gives 1: a server scales with
    requests and ``--workers``, not with threads per call.
    """
    from kiln.export.record import read_exports
    from kiln.models.package_files import read_meta

    meta = read_meta(source.package_dir)
    spec = DataSpec.from_dict(meta["data_spec"])
    predictor = serve_backend(source.backend).load(source.export_file or source.package_dir, spec.task, threads)
    record = None  # the eager package is the reference itself: no export vouches for it
    if source.export_file is not None:
        exports = read_exports(source.package_dir).get("exports", {})
        record = next((r for r in exports.values() if r.get("file") == source.export_file.name), None)
    parity = source.parity
    if parity is None or parity.file != (str(source.export_file) if source.export_file else None):
        parity = check_export(source.package_dir, source.export_file)  # a source built by hand
    return ServedModel(source, spec, predictor, meta, record, parity)


def mlflow_run_id(source: ModelSource) -> str | None:
    """The MLflow run behind the model: the registry's for a ``models:/`` URI, else the one the
    local run was tracked in (``logs/mlflow.json``); None for a run tracked without MLflow."""
    import json

    if source.registry.get("run_id"):
        return str(source.registry["run_id"])
    try:
        link = json.loads((source.package_dir.parent / "logs" / "mlflow.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(link["run_id"]) if isinstance(link, dict) and link.get("run_id") else None


def warm_up(served: ServedModel) -> None:
    """One prediction on zeros of the spec's input shape: the first call's set-up is paid before
    ``/ready`` says yes, and a model that cannot run on its own input shape fails here, clearly."""
    import numpy as np

    shape = (1, *served.spec.input_shape)
    try:
        served.backend.predict(np.zeros(shape, dtype=np.float32))
    except Exception as exc:
        raise ServeError(
            f"{served.source.name} ({served.backend.name} backend) fails on an input of shape "
            f"{list(shape)}: {exception_line(exc)}. Export the run again with kiln export RUN"
        ) from exc


def _refuse_language_models(package_dir: Path) -> None:
    """The API classifies and regresses fixed-shape inputs; text generation has its own verb."""
    from kiln.models.package_files import META
    from kiln.runs.layout import read_json

    if read_json(package_dir / META).get("task") == "language_modeling":
        raise ServeError(f"{package_dir} holds a language model, which kiln serve does not serve "
                         "(its API takes fixed-shape numeric inputs); sample from it with: "
                         "kiln generate RUN --prompt TEXT")


def _local_name(package_dir: Path) -> str:
    from kiln.runs.layout import read_json

    meta = read_json(package_dir / "model.json")
    return str(meta.get("run") or package_dir.parent.name)
