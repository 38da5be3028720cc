"""The read-only endpoints: ``/health``, ``/ready``, ``/metadata`` and ``/metrics``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from kiln.serve.inputs import Preprocessor
from kiln.serve.metrics import ServeMetrics
from kiln.serve.model import ServedModel
from kiln.serve.predict import json_response


def metadata(served: ServedModel, pre: Preprocessor, limits: dict[str, Any]) -> dict[str, Any]:
    """What ``/metadata`` answers: the model, its input contract and the export it runs."""
    from kiln.serve.model import mlflow_run_id

    spec, source, meta = served.spec, served.source, served.meta
    return {
        "name": source.name,
        "version": source.version,  # the registry's version, "local" for a run directory
        "run": meta.get("run"),
        "run_id": mlflow_run_id(source),  # the MLflow run (None: tracked without MLflow)
        "config_hash": meta.get("config_hash"),
        "registry": source.registry or None,
        "task": spec.task,
        "input": {
            "shape": list(spec.input_shape),
            "dtype": spec.input_dtype,
            "flat_size": math.prod(spec.input_shape),
            "normalization": {"mean": list(spec.mean), "std": list(spec.std)},
            "content_types": list(pre.content_types),
            "image_formats": list(pre.image_formats) if pre.image_model else [],
            # what an uploaded image goes through (None: resized bilinearly, then normalized)
            "preprocess": None if pre.preprocessing is None else pre.preprocessing.to_dict(),
        },
        "class_names": list(spec.class_names),
        "backend": served.backend.name,
        "model_file": str(source.export_file) if source.export_file else str(source.package_dir / "model.safetensors"),
        "export": served.export_record,
        # the export's parity verdict; allow_unverified: --allow-unverified was given
        "parity": {**served.parity.to_dict(), "allow_unverified": source.allow_unverified},
        "warning": None if served.parity.verified else f"UNVERIFIED export: {served.parity.detail}",
        "model": meta.get("model"),
        "parameters": meta.get("parameters"),
        "kiln_version": meta.get("kiln_version"),
        "limits": limits,
    }


def add_info_routes(app: Any, served: ServedModel, metrics: ServeMetrics, pre: Preprocessor,
                    ready: Callable[[], bool], limits: dict[str, Any]) -> None:
    info = metadata(served, pre, limits)

    async def health() -> Response:
        return json_response(200, {"status": "alive"})

    async def is_ready() -> Response:
        if ready():
            return json_response(200, {"status": "ready"})
        return json_response(503, {"status": "not ready: the model is loading or warming up"})

    async def get_metadata() -> Response:
        return json_response(200, info)

    async def get_metrics() -> Response:
        return Response(generate_latest(metrics.exposed), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/health", health, methods=["GET"], summary="The process is alive")
    app.add_api_route("/ready", is_ready, methods=["GET"], summary="The model is loaded and warmed up",
                      responses={503: {"description": "Still loading"}})
    app.add_api_route("/metadata", get_metadata, methods=["GET"], summary="Model, input contract, export")
    app.add_api_route("/metrics", get_metrics, methods=["GET"], summary="Prometheus metrics (text format)")
