"""The OpenAPI description of ``POST /predict``'s body, built from the model's input shape, and
of ``POST /feedback``'s.

The route parses its body itself (for error messages that name the expected shape, and speed),
so FastAPI cannot infer the schema; it is written here instead, precise enough for a client
generator or a property-based tester (schemathesis) to produce valid requests from it.
"""

from __future__ import annotations

from typing import Any

from kiln.serve.inputs import Preprocessor


def nested_schema(shape: tuple[int, ...]) -> dict[str, Any]:
    """JSON Schema of a nested list with exactly ``shape``."""
    schema: dict[str, Any] = {"type": "number"}
    for size in reversed(shape):
        schema = {"type": "array", "items": schema, "minItems": size, "maxItems": size}
    return schema


def predict_openapi(pre: Preprocessor) -> dict[str, Any]:
    instance: dict[str, Any] = nested_schema(pre.shape)
    if len(pre.shape) > 1:
        instance = {"anyOf": [instance, nested_schema((pre.size,))]}
    content: dict[str, Any] = {
        "application/json": {"schema": {
            "type": "object",
            "required": ["instances"],
            "properties": {"instances": {
                "type": "array", "items": instance, "minItems": 1, "maxItems": pre.max_batch,
                "description": f"1 to {pre.max_batch} instances of shape {list(pre.shape)} "
                               f"(or flat lists of {pre.size} values), in the dataset's units "
                               "before normalization; the server normalizes them",
            }},
        }},
    }
    if pre.image_model:
        content["multipart/form-data"] = {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": f"a {pre.formats_text} image, resized to the "
                                                   "model's input"}},
        }}
    return {"requestBody": {"required": True, "content": content}}


def feedback_openapi() -> dict[str, Any]:
    from kiln.monitor.feedback import MAX_ITEMS

    item = {
        "type": "object", "required": ["request_id", "label"], "additionalProperties": False,
        "properties": {
            "request_id": {"type": "string", "minLength": 1,
                           "description": "the request_id of a /predict answer"},
            "label": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
                      "description": "the true class: its name, or its index"},
            "index": {"type": "integer", "minimum": 0,
                      "description": "which instance of the request (needed when it sent several)"},
        },
    }
    batch = {"type": "object", "required": ["feedback"], "additionalProperties": False,
             "properties": {"feedback": {"type": "array", "items": item, "minItems": 1,
                                         "maxItems": MAX_ITEMS}}}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"anyOf": [item, batch]}}}}}
