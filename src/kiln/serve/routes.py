"""The read-only endpoints: ``/health``, ``/ready``, ``/metadata`` and ``/metrics``; and
``POST /feedback``, which hands true labels to :mod:`kiln.monitor`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from kiln.errors import InputError
from kiln.serve.inputs import Preprocessor
from kiln.serve.metrics import ServeMetrics
from kiln.serve.model import ServedModel
from kiln.serve.predict import json_response


def metadata(served: ServedModel, pre: Preprocessor, limits: dict[str, Any],
             prediction_log: str | None = None) -> dict[str, Any]:
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
        "prediction_log": prediction_log,  # the log's file (None: --no-prediction-log)
    }


def add_info_routes(app: Any, served: ServedModel, metrics: ServeMetrics, pre: Preprocessor,
                    ready: Callable[[], bool], limits: dict[str, Any],
                    prediction_log: str | None = None) -> None:
    info = metadata(served, pre, limits, prediction_log)

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


def add_feedback_route(app: Any, monitoring: Any) -> None:
    """``POST /feedback`` (``monitoring``: a :class:`kiln.monitor.serving.Monitoring`, None when
    the log is off); the body is checked, joined and written on a worker thread, off the loop."""
    import sqlite3

    from starlette.concurrency import run_in_threadpool

    from kiln.serve.openapi import feedback_openapi

    async def feedback(request: Request) -> Response:
        body = await request.body()
        if monitoring is None:
            return json_response(409, {"error": "this server runs with --no-prediction-log: no "
                                                "prediction is logged, so no feedback can be joined "
                                                "with one; restart it without that flag"})
        try:
            result = await run_in_threadpool(monitoring.feedback, body)
        except InputError as exc:
            return json_response(exc.status, {"error": str(exc)})
        except sqlite3.Error as exc:  # the file is locked past the busy timeout, or the disk is full
            return json_response(503, {"error": f"the prediction log cannot be written now ({exc}); "
                                                "retry later"})
        return json_response(200, result)

    app.add_api_route("/feedback", feedback, methods=["POST"], response_model=None,
                      summary="True labels for logged predictions (live accuracy on /metrics)",
                      openapi_extra=feedback_openapi(), responses={
                          400: {"description": "Malformed JSON"},
                          404: {"description": "A request id the prediction log does not hold"},
                          409: {"description": "A different label was recorded already, or the log is off"},
                          413: {"description": "Too many feedback items, or body over the size limit"},
                          422: {"description": "Wrong shape, unknown label or instance index"},
                      })
