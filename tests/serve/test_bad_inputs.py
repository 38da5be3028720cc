"""Every bad request gets its 4xx with a message naming the problem, and the server keeps serving.

The shared ONNX server runs with ``--max-batch 16 --max-body-mb 0.05`` (52,428 bytes).
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import Server

FLAT = [0.5] * 64
CASES = [
    # (id, body bytes, content type, status, words the message must contain)
    ("wrong-shape", json.dumps({"instances": [[1.0, 2.0]]}), "application/json", 422,
     ["shape [2]", "expected [1, 8, 8]", "64"]),
    ("wrong-type", json.dumps({"instances": [["a"] * 64]}), "application/json", 422, ["strings", "[1, 8, 8]"]),
    ("boolean", json.dumps({"instances": [[True] * 64]}), "application/json", 422, ["booleans"]),
    ("null", json.dumps({"instances": [[None] * 64]}), "application/json", 422, ["null"]),
    ("ragged", json.dumps({"instances": [FLAT, FLAT[:10]]}), "application/json", 422, ["ragged"]),
    ("nan", '{"instances": [[NaN' + ", 0.5" * 63 + "]]}", "application/json", 422, ["NaN"]),
    ("infinity", '{"instances": [[-Infinity' + ", 0.5" * 63 + "]]}", "application/json", 422, ["-Infinity"]),
    ("float32-overflow", json.dumps({"instances": [[1e39] * 64]}), "application/json", 422, ["float32"]),
    ("empty", json.dumps({"instances": []}), "application/json", 422, ["empty"]),
    ("too-many", json.dumps({"instances": [FLAT] * 17}), "application/json", 413, ["17", "limit of 16"]),
    ("no-instances-key", json.dumps({"inputs": [FLAT]}), "application/json", 422, ['"instances"']),
    ("not-an-object", json.dumps([FLAT]), "application/json", 422, ['"instances"']),
    ("instances-not-a-list", json.dumps({"instances": 3}), "application/json", 422, ["must be a list"]),
    ("malformed-json", '{"instances": [[1, 2', "application/json", 400, ["not valid JSON"]),
    ("undecodable-bytes", b"\xff\xfe\x00", "application/json", 400, ["not valid JSON"]),
    ("unsupported-content-type", "instances=1", "text/plain", 415, ["text/plain", "application/json"]),
    ("image-garbage", b"\x89PNG not really", "image/png", 415, ["PNG or JPEG"]),
    ("deeply-nested", '{"instances": ' + "[" * 5000, "application/json", 400, ["nested too deeply"]),
]


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


@pytest.fixture
def still_serving(onnx_server: Server) -> Iterator[None]:
    yield
    ok = httpx.post(f"{onnx_server.url}/predict", json={"instances": [FLAT]})
    assert ok.status_code == 200, ok.text
    assert onnx_server.process.poll() is None


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize(("body", "content_type", "status", "words"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_json_gets_4xx(onnx_server: Server, body: str | bytes, content_type: str, status: int,
                           words: list[str]) -> None:
    response = httpx.post(f"{onnx_server.url}/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for word in words:
        assert word in error
    assert response.json()["request_id"]


def _huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (4200, 4200)).save(buffer, format="PNG")  # 17.6 MP, a few kB compressed
    return buffer.getvalue()


@pytest.mark.usefixtures("still_serving")
def test_image_with_too_many_pixels_is_refused_before_decoding(onnx_server: Server) -> None:
    body = _huge_png()
    assert len(body) < 50_000
    response = httpx.post(f"{onnx_server.url}/predict", content=body, headers={"content-type": "image/png"})
    assert response.status_code == 413, response.text
    assert "4200x4200" in response.json()["error"]


@pytest.mark.usefixtures("still_serving")
def test_unsupported_image_format(onnx_server: Server) -> None:
    response = httpx.post(f"{onnx_server.url}/predict", files={"file": ("x.gif", _gif(), "image/gif")})
    assert response.status_code == 415
    assert "unsupported image format GIF" in response.json()["error"]


@pytest.mark.usefixtures("still_serving")
def test_multipart_without_file_field(onnx_server: Server) -> None:
    response = httpx.post(f"{onnx_server.url}/predict", files={"image": ("x.png", b"x", "image/png")})
    assert response.status_code == 422
    assert "'file'" in response.json()["error"]


@pytest.mark.usefixtures("still_serving")
def test_body_over_limit_with_content_length(onnx_server: Server) -> None:
    big = json.dumps({"instances": [[0.123456789] * 64] * 100}).encode()
    assert len(big) > 0.05 * 2**20
    response = httpx.post(f"{onnx_server.url}/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "52428 bytes" in response.json()["error"]


@pytest.mark.usefixtures("still_serving")
def test_streamed_body_over_limit_without_content_length(onnx_server: Server) -> None:
    def chunks() -> Iterator[bytes]:  # chunked transfer encoding: no Content-Length to check
        yield b'{"instances": ['
        for _ in range(200):
            yield json.dumps([0.123456789] * 64).encode() + b","
        yield b"[]]}"

    response = httpx.post(f"{onnx_server.url}/predict", content=chunks(),
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "exceeds 52428 bytes" in response.json()["error"]


@pytest.mark.usefixtures("still_serving")
def test_declared_oversize_body_is_refused_before_it_is_sent(onnx_server: Server) -> None:
    """A client announcing 1 GB and sending 10 bytes gets its 413 at once: the server does not
    wait for (or read) the body."""
    host, port = onnx_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n{\"instanc")
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413"), answer


def test_images_are_refused_for_a_non_image_model() -> None:
    from kiln.data.spec import DataSpec
    from kiln.serve.inputs import InputError, Preprocessor

    pre = Preprocessor(DataSpec("t", "classification", (20,), 3), max_batch=4)
    with pytest.raises(InputError, match=r"takes each instance a nested list of shape \[20\]") as info:
        pre.from_image(b"", "image/png")
    assert info.value.status == 415
    assert np.array_equal(pre.from_json(b'{"instances": [[' + b"1," * 19 + b"1]]}"), np.ones((1, 20)))
