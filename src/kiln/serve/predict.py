"""``POST /predict``: the body to a batch, the batch through the model, the answer as JSON.

Bad input is an ``InputError`` answered with its 4xx; a failure of the model itself answers 500
with a request id that is also in the log line, so an operator can find the traceback.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from kiln.serve.backends import Array
from kiln.serve.inputs import IMAGE_TYPES, InputError, Preprocessor
from kiln.serve.metrics import ServeMetrics
from kiln.serve.model import ServedModel

log = logging.getLogger("kiln.serve")

JSON_TYPES = ("", "application/json")


def json_response(status: int, content: dict[str, Any], request_id: str | None = None) -> Response:
    headers = {"x-request-id": request_id} if request_id else None
    return Response(json.dumps(content, allow_nan=False).encode(), status, headers,
                    media_type="application/json")


class PredictHandler:
    """Holds what one app's ``/predict`` needs; ``run`` is the model call (direct or batched)."""

    def __init__(self, served: ServedModel, pre: Preprocessor, metrics: ServeMetrics,
                 run: Callable[[Array], Awaitable[Array]],
                 record: Callable[[str, Array, Array], None] | None = None) -> None:
        self.served = served
        self.record = record  # the prediction log's (kiln.monitor): only queues, never waits
        self.pre = pre
        self.metrics = metrics
        self.run = run
        names = served.spec.class_names
        self.class_names = list(names) if names else [str(i) for i in range(served.spec.output_size)]
        self.model = {"name": served.source.name, "version": served.source.version,
                      "backend": served.backend.name}

    async def __call__(self, request: Request) -> Response:
        request_id = uuid.uuid4().hex[:16]
        try:
            batch = await self._batch(request)
        except InputError as exc:
            return json_response(exc.status, {"error": str(exc), "request_id": request_id}, request_id)
        try:
            probabilities = await self.run(batch)
            if not np.isfinite(probabilities).all():
                raise FloatingPointError("the model produced non-finite outputs")
        except Exception:
            log.error("request %s: the model failed on a batch of shape %s", request_id,
                      list(batch.shape), exc_info=True)
            return json_response(500, {
                "error": "the model failed on this request; the server log has the details under "
                         "this request id", "request_id": request_id}, request_id)
        answer = self._answer(probabilities, request_id)
        if self.record is not None:
            self.record(request_id, batch, probabilities)
        return json_response(200, answer, request_id)

    async def _batch(self, request: Request) -> Array:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in JSON_TYPES or content_type.endswith("+json"):
            return self.pre.from_json(await request.body())
        if content_type in IMAGE_TYPES:
            return self.pre.from_image(await request.body(), content_type)
        if content_type == "multipart/form-data":
            async with request.form(max_files=1, max_fields=4) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise InputError(422, "a multipart upload needs a field named 'file' holding a "
                                          f"{self.pre.formats_text} image")
                return self.pre.from_image(await upload.read(), upload.content_type)
        images = [t for t in self.pre.content_types if t.startswith("image/")]
        raise InputError(415, f"unsupported content type {content_type!r}: send application/json "
                              f"({{\"instances\": [...]}}), or a {self.pre.formats_text} image as "
                              f"{', '.join(images)} or a multipart field 'file'")

    def _answer(self, probabilities: Array, request_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = {"model": self.model, "request_id": request_id}
        if self.served.spec.task == "regression":
            answer["predictions"] = probabilities[:, 0].tolist()
            return answer
        classes = probabilities.argmax(axis=1).astype(np.int64).tolist()
        names = [self.class_names[c] for c in classes]
        self.metrics.count_predictions(names)
        answer.update(classes=classes, class_names=names, probabilities=probabilities.tolist())
        return answer
