"""What ``kiln serve`` serves: a model package, found from a run, a registry URI or an export file.

``prepare_model`` does everything that may write or take time once, in the parent process (resolve
a ``models:/`` URI, create the ONNX export when the run has none), and returns a picklable
``ModelSource``; ``load_served_model`` then builds the backend from it in each worker.

>>> served = load_served_model(prepare_model("runs/digits_mlp_20261123_101500"))  # doctest: +SKIP
>>> served.backend.name  # doctest: +SKIP
'onnx'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.data.spec import DataSpec
from kiln.errors import ServeError, exception_line
from kiln.serve.backends import Backend

log = logging.getLogger("kiln.serve")

BACKENDS = ("onnx", "torch")


@dataclass(frozen=True)
class ModelSource:
    """Where the model is and how to run it, resolved once (plain data, so workers can get it)."""

    package_dir: Path
    backend: str
    name: str
    version: str
    onnx_file: Path | None = None  # the ONNX file the onnx backend runs
    registry: dict[str, Any] = field(default_factory=dict)  # name, version, run id of a models:/ URI


@dataclass(frozen=True)
class ServedModel:
    """A loaded model: its backend, data spec and what ``/metadata`` reports."""

    source: ModelSource
    spec: DataSpec
    backend: Backend
    meta: dict[str, Any]
    export_record: dict[str, Any] | None


def prepare_model(source: str | Path, backend: str | None = None) -> ModelSource:
    """Resolve ``source`` and make sure the chosen backend has what it needs.

    ``backend`` None means ONNX Runtime: the run's ONNX export when it has a passing one, else one
    created now with ``kiln export``'s code (parity-checked, recorded in ``exports.json``).
    """
    from kiln.models.package import resolve_package_dir

    chosen = backend or "onnx"
    if chosen not in BACKENDS:
        raise ServeError(f"unknown backend {chosen!r}; allowed: {', '.join(BACKENDS)}")
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
    export_file = Path(text) if text.endswith(".onnx") and Path(text).is_file() else None
    onnx_file = None
    if chosen == "onnx":
        onnx_file = (export_file or _onnx_export(package_dir)).resolve()
    return ModelSource(package_dir.resolve(), chosen, name, version, onnx_file, registry)


def load_served_model(source: ModelSource, threads: int | None = None) -> ServedModel:
    """Load the package and build its backend (the model is not warmed up yet).

    ``threads``: intra-op threads of the runtime. ONNX Runtime gets them per session (None: 1);
    torch's setting is process-wide, so it is changed only when ``threads`` is given (the CLI
    gives 1: a server scales with requests and ``--workers``, not with threads per call).
    """
    from kiln.export.record import read_exports
    from kiln.models.package import load_package
    from kiln.serve.backends import OnnxBackend, TorchBackend

    package = load_package(source.package_dir)
    spec = package.spec
    backend: Backend
    if source.backend == "onnx":
        assert source.onnx_file is not None
        backend = OnnxBackend(source.onnx_file, spec.task, threads=1 if threads is None else threads)
    else:
        backend = TorchBackend(package.model, spec.task, threads)
    exports = read_exports(source.package_dir).get("exports", {})
    record = next((r for r in exports.values()
                   if source.onnx_file is not None and r.get("file") == source.onnx_file.name), None)
    if source.backend == "torch":
        record = None  # eager torch is the reference; there is no export to vouch for
    return ServedModel(source, spec, backend, package.meta, record)


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
    from kiln.models.package import META
    from kiln.runs.layout import read_json

    if read_json(package_dir / META).get("task") == "language_modeling":
        raise ServeError(f"{package_dir} holds a language model, which kiln serve does not serve "
                         "(its API takes fixed-shape numeric inputs); sample from it with: "
                         "kiln generate RUN --prompt TEXT")


def _local_name(package_dir: Path) -> str:
    from kiln.runs.layout import read_json

    meta = read_json(package_dir / "model.json")
    return str(meta.get("run") or package_dir.parent.name)


def _onnx_export(package_dir: Path) -> Path:
    """The package's passing ONNX export, created with kiln's export code when there is none."""
    from kiln.export.onnx import OnnxFormat
    from kiln.export.record import read_exports
    from kiln.export.run import ExportOptions, export_run

    record = read_exports(package_dir).get("exports", {}).get(OnnxFormat.name)
    path = package_dir / OnnxFormat.file
    if record and record.get("passed") and path.is_file():
        return path
    log.warning("%s has no ONNX export: creating one (kiln export --format onnx)", package_dir)
    report = export_run(package_dir, ExportOptions(formats=("onnx",), mlflow=False))
    if not report.passed:
        raise ServeError(
            "cannot serve with the onnx backend: the ONNX export failed ("
            + "; ".join(report.failures()) + "). Serve the eager model with --backend torch"
        )
    return path
