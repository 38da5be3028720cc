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


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    """An image file written with Pillow: (H, W) grayscale or (H, W, 3) RGB uint8 pixels."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    """The pixels a decoder reads back from ``data`` (JPEG is lossy: not those written)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, L = R*299/1000 + G*587/1000 + B*114/1000, in Pillow's fixed point
    (its "L" conversion): what the server makes of a colour image for a grayscale model."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


def _post_image(server: Server, data: bytes, content_type: str, multipart: bool) -> np.ndarray:
    if multipart:
        name = "upload." + content_type.split("/")[1]
        response = httpx.post(f"{server.url}/predict", files={"file": (name, data, content_type)})
    else:
        response = httpx.post(f"{server.url}/predict", content=data, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["probabilities"])


# Max abs difference allowed on a probability: ONNX Runtime's float32 kernels against torch's.
EXACT = 1e-6


@pytest.mark.parametrize("fmt, multipart", [("PNG", True), ("PNG", False), ("JPEG", True)])
def test_a_grayscale_image_of_the_model_size_is_its_pixels_over_255(
        onnx_server: Server, served_run: Path, fmt: str, multipart: bool) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (8, 8))
    data = _encode(pixels, fmt)
    seen = _decoded(data)
    assert seen.shape == (8, 8) and (fmt == "JPEG" or (seen == pixels).all())
    probabilities = _post_image(onnx_server, data, f"image/{fmt.lower()}", multipart)
    expected = expected_probabilities(served_run, seen[None, None] / 255.0)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=EXACT)


def test_an_image_of_another_size_is_resized_bilinearly(onnx_server: Server, served_run: Path) -> None:
    data = _encode(np.random.default_rng(3).integers(0, 256, (28, 20)), "JPEG")  # 20 wide, 28 high
    with Image.open(io.BytesIO(data)) as image:
        resized = np.asarray(image.resize((8, 8), Image.Resampling.BILINEAR))
    probabilities = _post_image(onnx_server, data, "image/jpeg", multipart=False)
    expected = expected_probabilities(served_run, resized[None, None] / 255.0)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=EXACT)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_colour_image_for_a_grayscale_model_becomes_its_luma(
        onnx_server: Server, served_run: Path, fmt: str) -> None:
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (8, 8, 3))
    rgb[..., 0] = 255 - rgb[..., 2]  # channels far apart, so any other mix of them differs
    data = _encode(rgb, fmt)
    seen = _decoded(data)
    assert seen.shape == (8, 8, 3) and (fmt == "JPEG" or (seen == rgb).all())
    probabilities = _post_image(onnx_server, data, f"image/{fmt.lower()}", multipart=True)
    expected = expected_probabilities(served_run, _luma(seen)[None, None] / 255.0)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=EXACT)
    # What a wrong conversion would answer is far off: the plain mean, or the red channel.
    for wrong in (seen.mean(axis=2), seen[..., 0]):
        assert np.abs(expected_probabilities(served_run, wrong[None, None] / 255.0) - probabilities).max() > 1e-3


def test_health_ready_docs(onnx_server: Server) -> None:
    assert httpx.get(f"{onnx_server.url}/health").json() == {"status": "alive"}
    assert httpx.get(f"{onnx_server.url}/ready").status_code == 200
    assert httpx.get(f"{onnx_server.url}/docs").status_code == 200
    schema = httpx.get(f"{onnx_server.url}/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert json.dumps(body["application/json"]["schema"]["properties"]["instances"]["maxItems"]) == "16"
