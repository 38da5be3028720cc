"""Turn a request body into the float32 batch the model takes, or a 4xx that says what was wrong.

Two forms are accepted:

- JSON ``{"instances": [...]}``: each instance a nested list of the model's input shape, or a flat
  list of all its values (784 numbers for a 1x28x28 model). Values are in the units the dataset
  yields before normalization (pixels scaled to 0..1 for the image datasets); the server applies
  the run's normalization, ``(x - mean) / std``, as training did (per channel for a model whose
  package records one mean per channel).
- An image (multipart field ``file`` or a raw ``image/...`` body) for image models. A package that
  records its preprocessing (``DataSpec.extra["preprocess"]``, every ``image_folder`` model) takes
  JPEG, PNG, BMP, WebP or GIF, and the upload becomes exactly what training's evaluation fed the
  model: ``kiln.data.images.decode.open_image`` (EXIF orientation, first frame, the model's
  channels), then the saved ``Preprocessing`` (resize rule, crop, scale, mean and std). Older image
  packages (digits, MNIST) take PNG or JPEG, converted to the model's channels, resized bilinearly
  to its size, scaled to 0..1, then normalized, as before.

Every rejection is an ``InputError`` carrying the HTTP status; nothing here raises anything else
for a bad body, which is what keeps bad input from ever becoming a 500.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from kiln.data.images.decode import FORMATS as DECODED_FORMATS
from kiln.data.images.preprocess import from_spec
from kiln.data.normalization import input_normalization
from kiln.data.spec import DataSpec
from kiln.errors import InputError as InputError  # its home; imported from here too
from kiln.models.reference import is_image
from kiln.serve.backends import Array

if TYPE_CHECKING:
    from kiln.data.images.preprocess import Preprocessing

# The content types /predict reads as an image body; whether the format is one the model takes is
# decided from the bytes (a GIF sent as image/png is a GIF), with a 415 naming what it accepts.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/x-ms-bmp", "image/webp", "image/gif", "image/tiff")
IMAGE_FORMATS = ("PNG", "JPEG")  # packages without a saved preprocessing (digits, MNIST)
PREPROCESSED_FORMATS = DECODED_FORMATS  # packages with one: what training reads (kiln.data.images.decode)
MAX_IMAGE_PIXELS = 4096 * 4096  # decoding a larger upload would cost hundreds of MB per request


class Preprocessor:
    """Validation and normalization for one model's DataSpec and the server's batch limit."""

    def __init__(self, spec: DataSpec, max_batch: int) -> None:
        self.shape = tuple(spec.input_shape)
        self.size = math.prod(self.shape)
        self.max_batch = max_batch
        self.preprocessing = from_spec(spec.extra)
        if self.preprocessing is not None:
            _check_preprocessing(self.preprocessing, self.shape)
        self.mean, self.std = input_normalization(spec)
        self.expected = (f"each instance a nested list of shape {list(self.shape)} "
                         f"or a flat list of {self.size} numbers")

    @property
    def image_model(self) -> bool:
        return is_image(self.shape)  # the rule training's reference statistics follow too

    @property
    def image_formats(self) -> tuple[str, ...]:
        """The image formats this model takes (Pillow's names)."""
        return PREPROCESSED_FORMATS if self.preprocessing is not None else IMAGE_FORMATS

    @property
    def content_types(self) -> tuple[str, ...]:
        """The request content types /predict reads for this model."""
        if not self.image_model:
            return ("application/json",)
        wanted = {f"image/{f.lower()}" for f in self.image_formats} | {"image/x-ms-bmp"}
        return ("application/json", "multipart/form-data", *(t for t in IMAGE_TYPES if t in wanted))

    @property
    def formats_text(self) -> str:
        """The accepted formats for a message: "PNG or JPEG", "JPEG, PNG, BMP, WebP, GIF or TIFF"."""
        names = [{"WEBP": "WebP"}.get(f, f) for f in self.image_formats if f != "MPO"]  # MPO is a JPEG
        return f"{', '.join(names[:-1])} or {names[-1]}"

    def from_json(self, body: bytes) -> Array:
        """The batch from a JSON body; InputError naming the problem and the expected shape."""
        data = self._parse(body)
        if not isinstance(data, dict) or "instances" not in data:
            raise InputError(422, f"the body must be a JSON object with a key \"instances\", "
                                  f"{self.expected}")
        instances = data["instances"]
        if not isinstance(instances, list):
            raise InputError(422, f"\"instances\" must be a list, got {type(instances).__name__}; "
                                  f"{self.expected}")
        if not instances:
            raise InputError(422, f"\"instances\" is empty: send at least one instance, {self.expected}")
        if len(instances) > self.max_batch:
            raise InputError(413, f"{len(instances)} instances is more than the limit of "
                                  f"{self.max_batch} per request (--max-batch); split the request")
        try:
            array = np.asarray(instances)
        except (ValueError, TypeError):
            raise InputError(422, f"instances must be lists of equal length ({self.expected}); "
                                  "got ragged lists") from None
        if array.dtype.kind not in "iuf":
            raise InputError(422, f"instances must hold only numbers (got {_kind(array)}); "
                                  f"{self.expected}")
        return self._finish(array.astype(np.float64))

    def _parse(self, body: bytes) -> Any:
        """orjson (about ten times faster than ``json`` on a 784-value body); when it refuses, the
        standard parser says precisely why (NaN and Infinity are its constants, 1e999 its inf)."""
        import orjson

        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise InputError(400, f"the body is not valid JSON ({exc}); send {{\"instances\": [...]}} "
                                  f"with {self.expected}") from None
        except RecursionError:  # thousands of nested brackets: orjson stops at 1024 levels
            raise InputError(400, f"the JSON is nested too deeply; send {{\"instances\": [...]}} "
                                  f"with {self.expected}") from None

    def from_image(self, data: bytes, content_type: str | None) -> Array:
        """A batch of one from image bytes, converted to the model's input."""
        if not self.image_model:
            raise InputError(415, f"this model takes {self.expected}, not images: "
                                  "send JSON {\"instances\": [...]}")
        if self.preprocessing is not None:
            return self._preprocessed(data, content_type, self.preprocessing)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in IMAGE_FORMATS:
                    raise InputError(415, f"unsupported image format {image.format}; send PNG or JPEG")
                if image.width * image.height > MAX_IMAGE_PIXELS:  # known before decoding
                    raise InputError(413, f"the image is {image.width}x{image.height} pixels; at most "
                                          f"{MAX_IMAGE_PIXELS:,} are accepted (the model takes "
                                          f"{self.shape[-1]}x{self.shape[-2]})")
                channels, height, width = self.shape
                converted = image.convert("L" if channels == 1 else "RGB").resize(
                    (width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(converted, dtype=np.float64) / 255.0
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            raise InputError(415, f"the upload (content type {content_type or 'unknown'}) is not a "
                                  "readable PNG or JPEG image") from None
        pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
        return self._finish(pixels[None])

    def _preprocessed(self, data: bytes, content_type: str | None, preprocessing: Preprocessing) -> Array:
        """The saved preprocessing applied to an upload: kiln's one decode, then the package's
        resize, crop and normalization, so the batch is the tensor evaluation fed the model."""
        from PIL import Image, UnidentifiedImageError

        from kiln.data.images.decode import open_image

        unreadable = (f"the upload (content type {content_type or 'unknown'}) is not a readable "
                      f"image; send {self.formats_text}")
        try:
            with warnings.catch_warnings():  # the size is refused below, with a 413 of its own
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:  # reads the header only
                    found, width, height = image.format, image.width, image.height
        except Image.DecompressionBombError:  # too many pixels even to open
            raise InputError(413, f"the image has more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} "
                                  f"pixels; at most {MAX_IMAGE_PIXELS:,} are accepted") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise InputError(415, unreadable) from None
        if found not in PREPROCESSED_FORMATS:
            raise InputError(415, f"unsupported image format {found}; send {self.formats_text}")
        if width * height > MAX_IMAGE_PIXELS:
            raise InputError(413, f"the image is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS:,} "
                                  f"are accepted (the model takes {preprocessing.size}x{preprocessing.size})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                decoded = open_image(data, preprocessing.channels)
        except ValueError as exc:  # truncated or corrupt past its header
            raise InputError(415, f"{unreadable} ({exc})") from None
        batch = preprocessing(decoded).numpy()[None]
        return np.ascontiguousarray(batch, dtype=np.float32)

    def _finish(self, array: Any) -> Array:
        if array.ndim >= 1 and array.shape[1:] == (self.size,) and self.shape != (self.size,):
            array = array.reshape(len(array), *self.shape)
        if array.shape[1:] != self.shape:
            raise InputError(422, f"instances have shape {list(array.shape[1:])}, expected "
                                  f"{list(self.shape)}: {self.expected}")
        array = self.normalize(array)
        if not np.isfinite(array).all():
            raise InputError(422, "instances contain NaN, infinity or a value too large for float32 "
                                  "(JSON NaN/Infinity, null, or beyond 3.4e38): send finite numbers")
        return np.ascontiguousarray(array)

    def normalize(self, array: Any) -> Array:
        """``(x - mean) / std`` in float64, then float32: what training applied to a batch of the
        model's input shape in dataset units. A value that ends non-finite (NaN, inf, beyond
        float32) stays so; callers refuse it (``/predict`` with a 422, ``kiln predict`` per row)."""
        with np.errstate(over="ignore", invalid="ignore"):
            normalized: Array = ((array - self.mean) / self.std).astype(np.float32)
        return normalized


def _reject_constant(name: str) -> float:
    raise InputError(422, f"instances contain {name}: NaN and infinity are not valid inputs; "
                          "send finite numbers")


def _kind(array: Any) -> str:
    """What a non-numeric array holds, in JSON words."""
    if array.dtype.kind == "b":
        return "booleans"
    if array.dtype.kind in "US":
        return "strings"
    return "null, objects, mixed types or integers too large for 64 bits"


def _check_preprocessing(preprocessing: Preprocessing, shape: tuple[int, ...]) -> None:
    """A package whose preprocessing makes another shape than its model takes is damaged; say so
    at start-up rather than answer every upload with a 500."""
    from kiln.errors import ServeError

    if tuple(preprocessing.input_shape) != shape:
        raise ServeError(f"the model package's preprocessing makes inputs of shape "
                         f"{list(preprocessing.input_shape)}, but its model takes {list(shape)}: "
                         "the package is damaged; export or train the run again")
    preprocessing.resize_steps()  # imports torchvision now (MissingExtraError names the extra)
