"""``create_app``: the FastAPI app serving one model, built by a factory with no global state.

Each app has its own model, its own Prometheus registry and its own batcher, so two apps can live
in one process (tests do) and nothing happens at import time.

>>> app = create_app("runs/digits_mlp_20261123_101500")  # doctest: +SKIP
>>> import uvicorn; uvicorn.run(app)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.errors import require_extra
from kiln.serve.model import ModelSource, ServedModel

if TYPE_CHECKING:
    from kiln.monitor.options import MonitorOptions

log = logging.getLogger("kiln.serve")

MB = 2**20


def create_app(
    model: str | Path | ModelSource | ServedModel,
    *,
    backend: str | None = None,
    max_batch: int = 256,
    max_body_mb: float = 8.0,
    batch_wait_ms: float = 0.0,
    threads: int | None = None,
    multiprocess_metrics: bool = False,
    allow_unverified: bool = False,
    monitor: MonitorOptions | None = None,
) -> Any:
    """A FastAPI app serving ``model`` (a run directory, ``models:/NAME@ALIAS``, an ONNX export,
    or an already prepared/loaded model).

    ``max_batch`` caps instances per request (and rows per micro-batch); ``max_body_mb`` caps the
    request body; ``batch_wait_ms`` > 0 turns on micro-batching with that wait; ``threads`` is the
    runtime's intra-op thread count (see ``load_served_model``). ``multiprocess_metrics`` makes
    ``/metrics`` sum every process sharing $PROMETHEUS_MULTIPROC_DIR (``kiln serve --workers N``).
    ``allow_unverified`` serves an export whose parity was not verified (see
    :mod:`kiln.serve.verify`); without it such a model path is refused with ServeError.
    ``monitor`` turns on the prediction log, ``POST /feedback`` and live accuracy on ``/metrics``
    (:mod:`kiln.monitor`; ``kiln serve`` turns it on unless --no-prediction-log).
    """
    fastapi = require("fastapi")
    for module in ("prometheus_client", "orjson"):
        require(module)
    from kiln.serve.batching import MicroBatcher
    from kiln.serve.inputs import Preprocessor
    from kiln.serve.limits import BodyLimitMiddleware
    from kiln.serve.metrics import MetricsMiddleware, ServeMetrics
    from kiln.serve.model import load_served_model, prepare_model, warm_up
    from kiln.serve.openapi import predict_openapi
    from kiln.serve.predict import PredictHandler
    from kiln.serve.routes import add_feedback_route, add_info_routes

    if max_batch < 1 or max_body_mb <= 0 or batch_wait_ms < 0 or not math.isfinite(batch_wait_ms):
        from kiln.errors import ServeError

        raise ServeError(f"max_batch ({max_batch}) and max_body_mb ({max_body_mb}) must be positive "
                         f"and batch_wait_ms ({batch_wait_ms}) a finite number >= 0")
    if not isinstance(model, ServedModel):
        source = (model if isinstance(model, ModelSource)
                  else prepare_model(model, backend, allow_unverified=allow_unverified))
        model = load_served_model(source, threads)
    served = model
    metrics = ServeMetrics(max_batch, multiprocess_metrics)
    metrics.model_info.labels(served.source.name, served.source.version, served.backend.name,
                              str(served.meta.get("run") or ""), served.parity.verdict).set(1)
    pre = Preprocessor(served.spec, max_batch)
    state: dict[str, Any] = {"ready": False, "batcher": None}
    monitoring = None if monitor is None else _monitoring(monitor, served, pre, metrics)

    async def direct(batch: Any) -> Any:
        # Called on the event loop: a thread hop costs more than a small model's call.
        metrics.batch_size.observe(len(batch))
        return served.backend.predict(batch)

    async def batched(batch: Any) -> Any:
        return await state["batcher"].submit(batch)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        warm_up(served)
        if batch_wait_ms > 0:
            state["batcher"] = MicroBatcher(served.backend.predict, max_batch, batch_wait_ms,
                                            metrics.batch_size.observe)
            state["batcher"].start()
        if monitoring is not None:
            monitoring.start()
        state["ready"] = True
        log.info("serving %s version %s with %s", served.source.name, served.source.version,
                 served.backend.name)
        try:
            yield
        finally:
            state["ready"] = False
            if state["batcher"] is not None:
                await state["batcher"].stop()
            if monitoring is not None:  # after the requests in flight: their predictions commit
                monitoring.stop()

    app = fastapi.FastAPI(
        title=f"kiln: {served.source.name}", version=served.source.version, lifespan=lifespan,
        description="Predictions from a kiln model. `POST /predict` takes JSON `{\"instances\": [...]}` "
                    f"(each instance of shape {list(served.spec.input_shape)}, or flat with "
                    f"{math.prod(served.spec.input_shape)} values)"
                    + (f" or a {pre.formats_text} image." if pre.image_model else "."),
    )
    handler = PredictHandler(served, pre, metrics, batched if batch_wait_ms > 0 else direct,
                             None if monitoring is None else monitoring.log.record)
    app.add_api_route("/predict", handler, methods=["POST"], summary="Predict classes of instances or an image",
                      openapi_extra=predict_openapi(pre), response_model=None,
                      responses=_error_responses())
    add_info_routes(app, served, metrics, pre, lambda: bool(state["ready"]),
                    {"max_batch": max_batch, "max_body_bytes": int(max_body_mb * MB),
                     "batch_wait_ms": batch_wait_ms},
                    None if monitoring is None else str(monitoring.path))
    add_feedback_route(app, monitoring)
    app.add_middleware(BodyLimitMiddleware, limit=int(max_body_mb * MB))
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees the 413s too
    app.state.metrics = metrics
    app.state.served = served
    return app


def _monitoring(options: MonitorOptions, served: ServedModel, pre: Any, metrics: Any) -> Any:
    """The prediction log and feedback of this process, its accuracy and drift on the exposed
    registry."""
    from kiln.monitor.serving import Monitoring
    from kiln.monitor.summary import InputSummary

    spec = served.spec
    classes = [] if spec.task == "regression" else (
        list(spec.class_names) or [str(i) for i in range(spec.output_size)])
    reference = _reference(served.source.package_dir)
    monitoring = Monitoring.open(options, served.source.name, served.source.version, classes,
                                 InputSummary(pre.shape, pre.mean, pre.std, pre.image_model),
                                 on_drop=metrics.log_dropped.inc, reference=reference)
    metrics.exposed.register(monitoring.collector)
    if monitoring.drift is not None:
        metrics.exposed.register(monitoring.drift)
    return monitoring


def _reference(package_dir: Path) -> Any:
    """The package's reference statistics for drift; None, said once, when it has none or they
    are damaged (monitoring's own file: the model is served all the same)."""
    from kiln.errors import ModelError
    from kiln.models.reference import REFERENCE, read_reference

    try:
        reference = read_reference(package_dir)
    except ModelError as exc:
        log.warning("%s: /metrics exports no drift", exc)
        return None
    if reference is None:
        log.warning("%s has no %s (reference statistics, saved by training since kiln monitors "
                    "drift): /metrics exports no drift", package_dir, REFERENCE)
    return reference


def _error_responses() -> dict[int | str, dict[str, Any]]:
    return {
        400: {"description": "Malformed JSON or multipart body"},
        413: {"description": "Body over the size limit, or more instances than --max-batch"},
        415: {"description": "Unsupported content type or image"},
        422: {"description": "Wrong shape or type, NaN or infinity, empty instances"},
        500: {"description": "The model failed; the answer carries a request id found in the log"},
    }


def require(module: str) -> Any:
    """Import an optional dependency of the server, or MissingExtraError naming the extra."""
    return require_extra(module, "serve")
