"""Predictions over real HTTP equal kiln.load_model's, for both backends, JSON and images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from kiln.export.record import read_exports
from tests.serve.conftest import Server
from tests.serve.helpers import digits_inputs, expected_probabilities


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_predictions_equal_load_model(backend: str, request: pytest.FixtureRequest, served_run: Path) -> None:
    server: Server = request.getfixturevalue(f"{backend}_server")
    raw = digits_inputs(5)
    response = httpx.post(f"{server.url}/predict", json={"instances": raw.tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = expected_probabilities(served_run, raw)
    np.testing.assert_allclose(np.asarray(body["probabilities"]), expected, rtol=1e-4, atol=1e-5)
    assert body["classes"] == expected.argmax(1).tolist()
    assert body["class_names"] == [str(c) for c in body["classes"]]
    assert body["model"] == {"name": served_run.name, "version": "local", "backend": backend}
    assert response.headers["x-request-id"] == body["request_id"]


def test_flat_instances_equal_nested(onnx_server: Server) -> None:
    raw = digits_inputs(3, seed=1)
    nested = httpx.post(f"{onnx_server.url}/predict", json={"instances": raw.tolist()}).json()
    flat = httpx.post(f"{onnx_server.url}/predict", json={"instances": raw.reshape(3, 64).tolist()}).json()
    assert flat["probabilities"] == nested["probabilities"]


def test_onnx_export_was_created_by_the_server_and_reported(onnx_server: Server, served_run: Path) -> None:
    record = read_exports(served_run / "models")["exports"]["onnx"]
    assert record["passed"] and (served_run / "models" / "model.onnx").is_file()
    meta = httpx.get(f"{onnx_server.url}/metadata").json()
    assert meta["backend"] == "onnx" and meta["export"]["parity"]["passed"] is True
    assert meta["export"]["sha256"] == record["sha256"]
    assert meta["input"]["shape"] == [1, 8, 8] and meta["input"]["dtype"] == "float32"
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["run"] == served_run.name


def _png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format=fmt)
    return buffer.getvalue()


def test_png_upload_is_scaled_and_normalized_like_the_data(onnx_server: Server, served_run: Path) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (8, 8))
    response = httpx.post(f"{onnx_server.url}/predict",
                          files={"file": ("digit.png", _png(pixels), "image/png")})
    assert response.status_code == 200, response.text
    expected = expected_probabilities(served_run, pixels[None, None] / 255.0)
    np.testing.assert_allclose(response.json()["probabilities"], expected, rtol=1e-4, atol=1e-5)


def test_jpeg_body_of_another_size_is_resized(onnx_server: Server) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (28, 28))
    response = httpx.post(f"{onnx_server.url}/predict", content=_png(pixels, "JPEG"),
                          headers={"content-type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert len(response.json()["probabilities"]) == 1


def test_health_ready_docs(onnx_server: Server) -> None:
    assert httpx.get(f"{onnx_server.url}/health").json() == {"status": "alive"}
    assert httpx.get(f"{onnx_server.url}/ready").status_code == 200
    assert httpx.get(f"{onnx_server.url}/docs").status_code == 200
    schema = httpx.get(f"{onnx_server.url}/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert json.dumps(body["application/json"]["schema"]["properties"]["instances"]["maxItems"]) == "16"
