"""Open an image file (or uploaded bytes) as a Pillow image in the model's channels.

One function for training, eval, serve and predict, so a photo is read the same way everywhere:
EXIF orientation applied; the first frame of an animation (GIF, WebP); grayscale, palette, RGBA,
CMYK and 16-bit images converted to ``L`` (1 channel) or ``RGB`` (3). Transparent pixels become
white, as an image viewer shows them on a page, instead of whatever colour they happened to hold.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

FORMATS = ("JPEG", "MPO", "PNG", "BMP", "WEBP", "GIF", "TIFF")  # MPO: phone JPEGs with a second picture
MAX_PIXELS = 8192 * 8192  # a larger image is refused before decoding (a decompression bomb)


def open_image(source: str | Path | bytes, channels: int) -> Image.Image:
    """The decoded image in ``L`` (channels 1) or ``RGB`` (channels 3).

    Raises ``ValueError`` naming the problem for anything that is not a readable image of a
    supported format (the callers turn it into their own error: a scan entry, an HTTP 415).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        # a file object, not a path: given a path, Pillow maps uncompressed images (BMP, TIFF)
        # and the returned image would keep the file open for as long as it lives
        with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as handle, \
                Image.open(handle) as image:
            if image.format not in FORMATS:
                raise ValueError(f"unsupported image format {image.format}; supported: {', '.join(FORMATS)}")
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{image.width}x{image.height} pixels is more than {MAX_PIXELS:,}")
            image.seek(0)  # the first frame of an animation
            image.load()  # decode now: a truncated file fails here, not later
            ImageOps.exif_transpose(image, in_place=True)  # in place: a copy of every image costs more
            return convert(image, channels)
    except UnidentifiedImageError:
        raise ValueError("not an image file Pillow can read") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:  # truncated, corrupt
        raise ValueError(f"unreadable image: {' '.join(str(exc).split())}") from None


def convert(image: Image.Image, channels: int) -> Image.Image:
    """``image`` in ``L`` or ``RGB``, whatever mode it came in."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit (and 32-bit) grayscale
        import numpy as np

        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        image = Image.fromarray(np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        import numpy as np

        pixels = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(pixels * (255.0 if pixels.max() <= 1 else 1.0), 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)
