"""Request bodies to model batches, exactly: values, normalization, statuses and messages."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from kiln.data.normalization import broadcast_stat as _stat
from kiln.data.spec import DataSpec
from kiln.serve.inputs import MAX_IMAGE_PIXELS, InputError, Preprocessor, _kind

FLAT = DataSpec(name="t", task="classification", input_shape=(3,), num_classes=2, mean=(1.0,), std=(2.0,))
GRID = DataSpec(name="g", task="classification", input_shape=(1, 2, 2), num_classes=2,
                mean=(0.5,), std=(0.25,))
RGB = DataSpec(name="c", task="classification", input_shape=(3, 2, 2), num_classes=2,
               mean=(0.5,), std=(0.5,))
PER_FEATURE = DataSpec(name="p", task="regression", input_shape=(3,), num_classes=1,
                       mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 0.25))
EXPECT_FLAT = "each instance a nested list of shape [3] or a flat list of 3 numbers"
EXPECT_GRID = "each instance a nested list of shape [1, 2, 2] or a flat list of 4 numbers"


def _refused(fn: object, *args: object) -> InputError:
    with pytest.raises(InputError) as err:
        fn(*args)  # type: ignore[operator]
    return err.value


def test_preprocessor_fields() -> None:
    p = Preprocessor(GRID, max_batch=5)
    assert (p.shape, p.size, p.max_batch, p.expected) == ((1, 2, 2), 4, 5, EXPECT_GRID)
    assert p.image_model is True
    assert Preprocessor(RGB, 1).image_model is True
    assert Preprocessor(FLAT, 1).image_model is False
    two = DataSpec(name="x", task="classification", input_shape=(2, 2, 2), num_classes=2)
    assert Preprocessor(two, 1).image_model is False
    flat_image = DataSpec(name="x", task="classification", input_shape=(1, 4), num_classes=2)
    assert Preprocessor(flat_image, 1).image_model is False


def test_json_is_normalized_exactly() -> None:
    got = Preprocessor(FLAT, 4).from_json(b'{"instances": [[1, 3, 5], [0.0, -1.0, 2.5]]}')
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    assert got.tolist() == [[0.0, 1.0, 2.0], [-0.5, -1.0, 0.75]]


def test_flat_instances_are_reshaped_and_nested_ones_kept() -> None:
    p = Preprocessor(GRID, 4)
    flat = p.from_json(b'{"instances": [[0.5, 0.75, 1.0, 0.25]]}')
    nested = p.from_json(b'{"instances": [[[[0.5, 0.75], [1.0, 0.25]]]]}')
    assert flat.shape == nested.shape == (1, 1, 2, 2)
    assert flat.tolist() == nested.tolist() == [[[[0.0, 1.0], [2.0, -1.0]]]]


def test_per_feature_stats() -> None:
    got = Preprocessor(PER_FEATURE, 1).from_json(json.dumps({"instances": [[1.0] * 3]}).encode())
    assert got.tolist() == [[1.0, 1.0, 0.0]]


def test_stat() -> None:
    assert _stat((), (3,), 7.0) == 7.0 and _stat((), (3,), 7.0).shape == ()
    one = _stat((2.0,), (1, 2, 2), 0.0)
    assert one.shape == () and one == 2.0
    per = _stat((1.0, 2.0, 3.0), (3, 1, 1), 0.0)
    assert per.shape == (3, 1, 1) and per.ravel().tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"[1, 2]", 422, f'the body must be a JSON object with a key "instances", {EXPECT_FLAT}'),
        (b'{"rows": []}', 422, f'the body must be a JSON object with a key "instances", {EXPECT_FLAT}'),
        (b'{"instances": 3}', 422, f'"instances" must be a list, got int; {EXPECT_FLAT}'),
        (b'{"instances": []}', 422, f'"instances" is empty: send at least one instance, {EXPECT_FLAT}'),
        (b'{"instances": [[1,2,3],[1,2,3],[1,2,3]]}', 413,
         "3 instances is more than the limit of 2 per request (--max-batch); split the request"),
        (b'{"instances": [[1,2,3],[1,2]]}', 422,
         f"instances must be lists of equal length ({EXPECT_FLAT}); got ragged lists"),
        (b'{"instances": [[true, false, true]]}', 422,
         f"instances must hold only numbers (got booleans); {EXPECT_FLAT}"),
        (b'{"instances": [["a", "b", "c"]]}', 422,
         f"instances must hold only numbers (got strings); {EXPECT_FLAT}"),
        (b'{"instances": [[1, null, 3]]}', 422,
         "instances must hold only numbers (got null, objects, mixed types or integers too large for "
         f"64 bits); {EXPECT_FLAT}"),
        (b'{"instances": [[1, 2]]}', 422, f"instances have shape [2], expected [3]: {EXPECT_FLAT}"),
        (b'{"instances": [1, 2]}', 422, f"instances have shape [], expected [3]: {EXPECT_FLAT}"),
        (b'{"instances": [[1, NaN, 3]]}', 422,
         "instances contain NaN: NaN and infinity are not valid inputs; send finite numbers"),
        (b'{"instances": [[1, -Infinity, 3]]}', 422,
         "instances contain -Infinity: NaN and infinity are not valid inputs; send finite numbers"),
        (b'{"instances": [[1, 1e999, 3]]}', 422,
         "instances contain NaN, infinity or a value too large for float32 (JSON NaN/Infinity, null, "
         "or beyond 3.4e38): send finite numbers"),
        (b'{"instances": [[1, 1e39, 3]]}', 422,
         "instances contain NaN, infinity or a value too large for float32 (JSON NaN/Infinity, null, "
         "or beyond 3.4e38): send finite numbers"),
    ],
)
def test_json_refusals(body: bytes, status: int, message: str) -> None:
    err = _refused(Preprocessor(FLAT, 2).from_json, body)
    assert (err.status, str(err)) == (status, message)


def test_the_batch_limit_is_inclusive() -> None:
    assert Preprocessor(FLAT, 2).from_json(b'{"instances": [[1,2,3],[1,2,3]]}').shape == (2, 3)


def test_invalid_json_and_deep_nesting() -> None:
    err = _refused(Preprocessor(FLAT, 2).from_json, b'{"instances": [')
    assert err.status == 400
    assert str(err).startswith("the body is not valid JSON (Expecting value: line 1 column 16 (char 15)); ")
    assert str(err).endswith(f'send {{"instances": [...]}} with {EXPECT_FLAT}')
    err = _refused(Preprocessor(FLAT, 2).from_json, b"\xff\xfe")
    assert err.status == 400 and str(err).startswith("the body is not valid JSON (")
    deep = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    err = _refused(Preprocessor(FLAT, 2).from_json, deep)
    assert (err.status, str(err)) == (
        400, f'the JSON is nested too deeply; send {{"instances": [...]}} with {EXPECT_FLAT}'
    )


def test_kind() -> None:
    assert _kind(np.asarray([True])) == "booleans"
    assert _kind(np.asarray(["a"])) == "strings"
    assert _kind(np.asarray([b"a"])) == "strings"
    assert _kind(np.asarray([None])) == "null, objects, mixed types or integers too large for 64 bits"


def _png(mode: str, size: tuple[int, int], color: object, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format=fmt)
    return out.getvalue()


def test_png_to_a_grayscale_model() -> None:
    got = Preprocessor(GRID, 1).from_image(_png("L", (2, 2), 255), "image/png")
    assert got.shape == (1, 1, 2, 2) and got.dtype == np.float32
    assert got.ravel().tolist() == [2.0] * 4  # (1.0 - 0.5) / 0.25


def test_rgb_upload_to_a_grayscale_model_uses_luminance() -> None:
    got = Preprocessor(GRID, 1).from_image(_png("RGB", (4, 4), (255, 0, 0)), "image/png")
    # PIL's L = R * 299/1000 + G * 587/1000 + B * 114/1000: pure red is 76
    assert got.ravel().tolist() == pytest.approx([(76 / 255 - 0.5) / 0.25] * 4)


def test_rgb_model_gets_channels_first_and_resized() -> None:
    got = Preprocessor(RGB, 1).from_image(_png("RGB", (6, 3), (255, 128, 0)), None)
    assert got.shape == (1, 3, 2, 2)
    assert got[0, :, 1, 1].tolist() == pytest.approx([1.0, (128 / 255 - 0.5) / 0.5, -1.0])


def test_jpeg_is_accepted() -> None:
    got = Preprocessor(GRID, 1).from_image(_png("L", (2, 2), 128, fmt="JPEG"), "image/jpeg")
    assert got.shape == (1, 1, 2, 2)
    assert np.allclose(got, (128 / 255 - 0.5) / 0.25, atol=0.05)


def test_image_refusals() -> None:
    err = _refused(Preprocessor(FLAT, 1).from_image, _png("L", (2, 2), 0), "image/png")
    assert (err.status, str(err)) == (
        415, f'this model takes {EXPECT_FLAT}, not images: send JSON {{"instances": [...]}}'
    )
    err = _refused(Preprocessor(GRID, 1).from_image, _png("L", (2, 2), 0, fmt="GIF"), "image/gif")
    assert (err.status, str(err)) == (415, "unsupported image format GIF; send PNG or JPEG")
    err = _refused(Preprocessor(GRID, 1).from_image, b"not an image", "image/png")
    assert (err.status, str(err)) == (
        415, "the upload (content type image/png) is not a readable PNG or JPEG image"
    )
    err = _refused(Preprocessor(GRID, 1).from_image, b"not an image", None)
    assert str(err) == "the upload (content type unknown) is not a readable PNG or JPEG image"


def test_pixel_limit_is_checked_before_decoding_and_inclusive() -> None:
    assert MAX_IMAGE_PIXELS == 4096 * 4096
    big = _png("1", (4097, 4096), 0)
    err = _refused(Preprocessor(GRID, 1).from_image, big, "image/png")
    assert (err.status, str(err)) == (
        413, "the image is 4097x4096 pixels; at most 16,777,216 are accepted (the model takes 2x2)"
    )
    ok = Preprocessor(GRID, 1).from_image(_png("1", (4096, 4096), 0), "image/png")
    assert ok.shape == (1, 1, 2, 2)


def test_no_stats_leave_values_as_sent() -> None:
    plain = DataSpec(name="p", task="regression", input_shape=(3,), num_classes=1)
    assert Preprocessor(plain, 1).from_json(b'{"instances": [[1.5, -2, 0]]}').tolist() == [[1.5, -2.0, 0.0]]
    grid = DataSpec(name="g", task="classification", input_shape=(1, 2, 2), num_classes=2)
    assert Preprocessor(grid, 1).from_json(b'{"instances": [[1, 2, 3, 4]]}').ravel().tolist() == [1, 2, 3, 4]


def test_a_flat_instance_of_the_wrong_size_is_a_422_for_an_image_model() -> None:
    err = _refused(Preprocessor(GRID, 1).from_json, b'{"instances": [[1, 2, 3]]}')
    assert (err.status, str(err)) == (422, f"instances have shape [3], expected [1, 2, 2]: {EXPECT_GRID}")


def test_non_square_models_name_width_by_height_and_resize_bilinear() -> None:
    wide = DataSpec(name="w", task="classification", input_shape=(1, 2, 3), num_classes=2)
    err = _refused(Preprocessor(wide, 1).from_image, _png("1", (4097, 4096), 0), "image/png")
    assert str(err).endswith("(the model takes 3x2)")
    image = Image.new("L", (5, 4))
    image.putdata([(i * 37) % 256 for i in range(20)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    got = Preprocessor(wide, 1).from_image(out.getvalue(), "image/png")
    want = np.asarray(image.resize((3, 2), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    assert got.shape == (1, 1, 2, 3)
    assert np.allclose(got[0, 0], want, rtol=0, atol=1e-7)
    assert not np.allclose(want, np.asarray(image.resize((3, 2), Image.Resampling.BICUBIC)) / 255.0)


def test_per_feature_stats_of_an_image_model_take_its_shape() -> None:
    spec = DataSpec(name="g", task="classification", input_shape=(1, 2, 2), num_classes=2,
                    mean=(0.0, 1.0, 2.0, 3.0), std=(1.0, 1.0, 2.0, 4.0))
    got = Preprocessor(spec, 1).from_json(b'{"instances": [[1, 1, 4, 7]]}')
    assert got.tolist() == [[[[1.0, 0.0], [1.0, 1.0]]]]
