"""One preprocessing everywhere: a real ``kiln serve`` of an ``image_folder`` model answers an
uploaded file with the probabilities ``kiln eval`` wrote for that file, and those the saved
``Preprocessing`` gives in-process, to 1e-5; it takes JPEG, PNG, BMP, WebP and GIF, and refuses a
non-image, a truncated file, an unsupported format and an oversized image with a 4xx that says why.

The run is trained and evaluated through the CLI (``kiln train data.name=image_folder``, ``kiln
eval``) on real image files this module writes; the server is a subprocess on a socket.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from kiln.data.images.decode import open_image
from kiln.data.images.preprocess import Preprocessing, from_spec
from kiln.data.spec import DataSpec
from kiln.errors import ServeError
from kiln.models.package import load_package
from kiln.serve.inputs import InputError, Preprocessor
from kiln.testing.images import write_digits_folder
from tests.conftest import run_cli
from tests.serve.conftest import Server, running

SIZE = 16  # the model's input; the files are 20x20, so every upload is resized and cropped
AGREE = 1e-5  # serve (ONNX Runtime) against eval and in-process (torch): the bound
FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "WEBP": "image/webp",
           "GIF": "image/gif", "TIFF": "image/tiff"}


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN trained one epoch on 3 classes of digit photos (PNG and JPEG), then evaluated."""
    root = tmp_path_factory.mktemp("image-serve")
    folder = write_digits_folder(root / "photos", classes=3, per_class=14, size=20, formats=("png", "jpg"))
    trained = run_cli(
        "train", "data.name=image_folder", f"data.path={folder}", f"data.image.size={SIZE}",
        "data.image.mean=dataset", "data.image.std=dataset", "model.name=cnn", "model.filters=[4]",
        "model.hidden=[8]", "training.epochs=1", "training.batch_size=8", "run.progress=false",
        f"run.output_dir={root / 'runs'}", "tracking.backends=[jsonl]", "checkpoint.enabled=false",
    )
    assert trained.returncode == 0, trained.stderr
    (run,) = (root / "runs").iterdir()
    evaluated = run_cli("eval", str(run), "--no-cost")
    assert evaluated.returncode == 0, evaluated.stderr
    return run


@pytest.fixture(scope="module")
def image_server(image_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("logs") / "image.log"
    with running(image_run, log, "--max-body-mb", "1") as server:
        yield server


def _saved(run: Path) -> Preprocessing:
    preprocessing = from_spec(load_package(run).spec.extra)
    assert preprocessing is not None
    return preprocessing


def _in_process(run: Path, data: bytes) -> np.ndarray:
    """The package's model on the saved preprocessing of ``data``: what every stage must give."""
    package = load_package(run)
    preprocessing = _saved(run)
    with torch.no_grad():
        logits = package.model(preprocessing(open_image(data, preprocessing.channels))[None])
    return torch.softmax(logits, dim=1)[0].numpy()


def _post(server: Server, data: bytes, content_type: str, multipart: bool) -> httpx.Response:
    if multipart:
        return httpx.post(f"{server.url}/predict", files={"file": ("upload", data, content_type)}, timeout=30)
    return httpx.post(f"{server.url}/predict", content=data, headers={"content-type": content_type}, timeout=30)


def _probabilities(server: Server, data: bytes, content_type: str, multipart: bool = False) -> np.ndarray:
    response = _post(server, data, content_type, multipart)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["probabilities"][0])


def test_serve_answers_a_file_with_the_probabilities_eval_wrote_for_it(image_run: Path, image_server: Server) -> None:
    rows = list(csv.DictReader((image_run / "eval" / "predictions_test.csv").read_text().splitlines()))
    names = list(load_package(image_run).spec.class_names)
    assert names == ["digit_0", "digit_1", "digit_2"]
    suffixes = {Path(r["file"]).suffix for r in rows}
    assert suffixes == {".png", ".jpg"}, suffixes  # both decoders are compared
    for i, row in enumerate(rows):
        data = Path(row["file"]).read_bytes()
        content_type = "image/png" if row["file"].endswith(".png") else "image/jpeg"
        served = _probabilities(image_server, data, content_type, multipart=i % 2 == 0)
        evaluated = np.asarray([float(row[f"p_{name}"]) for name in names])
        np.testing.assert_allclose(served, evaluated, rtol=0, atol=AGREE, err_msg=row["file"])
        np.testing.assert_allclose(served, _in_process(image_run, data), rtol=0, atol=AGREE, err_msg=row["file"])


def _photo() -> Image.Image:
    """A non-square RGBA picture with a transparent corner: decode, alpha and crop all matter."""
    pixels = np.random.default_rng(7).integers(0, 256, (18, 26, 4), dtype=np.uint8)
    pixels[:6, :6, 3] = 0
    return Image.fromarray(pixels, "RGBA")


def _encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "MPO":  # a phone's JPEG with a second picture after the first
        image.convert("RGB").save(out, format="MPO", save_all=True, append_images=[image.convert("RGB").rotate(90)])
    else:
        (image if fmt in ("PNG", "WEBP", "GIF", "TIFF") else image.convert("RGB")).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_supported_format_goes_through_the_saved_preprocessing(
    fmt: str, image_run: Path, image_server: Server
) -> None:
    data = _encoded(_photo(), fmt)
    raw = _probabilities(image_server, data, FORMATS[fmt])
    np.testing.assert_allclose(raw, _in_process(image_run, data), rtol=0, atol=AGREE)
    multipart = _probabilities(image_server, data, FORMATS[fmt], multipart=True)
    np.testing.assert_allclose(multipart, raw, rtol=0, atol=AGREE)


def test_json_pixels_in_0_to_1_mean_what_an_image_of_the_model_size_means(
    image_run: Path, image_server: Server
) -> None:
    """A JSON instance holds pixels over 255, normalized by the server with the package's
    per-channel mean and std, as a PNG of exactly the model's size (no resize) is."""
    pixels = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    png = _encoded(Image.fromarray(pixels, "RGB"), "PNG")
    instance = (pixels.transpose(2, 0, 1) / 255.0).tolist()
    response = httpx.post(f"{image_server.url}/predict", json={"instances": [instance]}, timeout=30)
    assert response.status_code == 200, response.text
    from_json = np.asarray(response.json()["probabilities"][0])
    np.testing.assert_allclose(from_json, _probabilities(image_server, png, "image/png"), rtol=0, atol=AGREE)
    assert len(set(_saved(image_run).mean)) == 3  # measured per channel: one mean each would differ


def _truncated_jpeg() -> bytes:
    """A JPEG whose header is whole (it opens) but whose pixel data stops halfway."""
    pixels = np.random.default_rng(5).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    data = _encoded(Image.fromarray(pixels, "RGB"), "JPEG")
    with Image.open(io.BytesIO(data[: len(data) // 2])) as image:
        assert image.size == (160, 120)
    return data[: len(data) // 2]


def _large_png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (5000, 4000)).save(out, format="PNG")  # 20 MP in a few kB
    return out.getvalue()


BAD = [
    # (id, body, content type, status, words the message must contain)
    ("not-an-image", b"%PDF-1.7 certainly not pixels", "image/png", 415,
     ["not a readable image", "JPEG, PNG, BMP, WebP, GIF or TIFF"]),
    ("truncated", _truncated_jpeg(), "image/jpeg", 415, ["not a readable image", "truncated"]),
    ("unsupported-format", _encoded(_photo().convert("RGB"), "ICO"), "image/png", 415,
     ["unsupported image format ICO", "JPEG, PNG, BMP, WebP, GIF or TIFF"]),
    ("too-many-pixels", _large_png(), "image/png", 413, ["5000x4000", "16,777,216", "16x16"]),
    ("text-body", b"hello", "text/plain", 415, ["text/plain", "image/webp", "image/gif"]),
]


@pytest.mark.parametrize(("body", "content_type", "status", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_uploads_get_a_4xx_that_says_why(image_server: Server, body: bytes, content_type: str, status: int,
                                              words: list[str]) -> None:
    for multipart in (False, True) if content_type.startswith("image/") else (False,):
        response = _post(image_server, body, content_type, multipart)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        for word in words:
            assert word in error, error
    assert _post(image_server, _encoded(_photo(), "PNG"), "image/png", False).status_code == 200
    assert image_server.process.poll() is None


def test_metadata_names_the_formats_and_the_preprocessing(image_run: Path, image_server: Server) -> None:
    info = httpx.get(f"{image_server.url}/metadata", timeout=10).json()["input"]
    assert info["preprocess"] == _saved(image_run).to_dict()
    assert info["image_formats"] == ["JPEG", "MPO", "PNG", "BMP", "WEBP", "GIF", "TIFF"]  # what training reads
    assert {"image/jpeg", "image/png", "image/bmp", "image/webp", "image/gif", "image/tiff"} <= set(info["content_types"])


PRE = Preprocessing(size=4, resize="stretch", channels=3, mean=(0.2, 0.4, 0.6), std=(0.5, 0.25, 0.125))


def _spec(preprocessing: Preprocessing, shape: tuple[int, ...]) -> DataSpec:
    return DataSpec("image_folder", "classification", shape, 2, ("a", "b"), mean=preprocessing.mean,
                    std=preprocessing.std, extra={"preprocess": preprocessing.to_dict()})


def test_json_is_normalized_per_channel_as_the_preprocessing_normalizes() -> None:
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 4, 4), dtype=np.uint8))
    body = json.dumps({"instances": [(pixels.numpy() / 255.0).tolist()]}).encode()
    got = Preprocessor(_spec(PRE, PRE.input_shape), 2).from_json(body)
    np.testing.assert_allclose(got[0], PRE.normalize(pixels).numpy(), rtol=0, atol=1e-6)


def test_a_package_whose_preprocessing_disagrees_with_its_input_shape_is_refused_at_start() -> None:
    with pytest.raises(ServeError, match=r"makes inputs of shape \[3, 4, 4\], but its model takes \[3, 8, 8\]"):
        Preprocessor(_spec(PRE, (3, 8, 8)), 2)


def test_an_image_too_large_even_to_open_is_a_413() -> None:
    out = io.BytesIO()
    Image.new("1", (15000, 12000)).save(out, format="PNG")  # 180 MP: Pillow refuses to open it
    with pytest.raises(InputError) as err:
        Preprocessor(_spec(PRE, PRE.input_shape), 2).from_image(out.getvalue(), "image/png")
    assert err.value.status == 413 and "at most 16,777,216" in str(err.value)
