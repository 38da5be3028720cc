"""Real image folders made from scikit-learn's bundled digits, for tests, examples and benchmarks.

Each 8x8 digit is upscaled (nearest neighbour, then a little blur) to ``size`` pixels and written
as a real PNG or JPEG file with Pillow, one folder per class, so the image_folder pipeline reads
exactly what a user's photographs would give it: files on disk, decoded lazily.

>>> write_digits_folder("photos", classes=2, per_class=20)  # doctest: +SKIP
PosixPath('photos')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

Layout = Literal["flat", "splits"]


def write_digits_folder(
    root: str | Path,
    *,
    classes: int | Sequence[int] = 10,
    per_class: int | None = None,
    size: int = 32,
    formats: Sequence[str] = ("png",),
    layout: Layout = "flat",
    rgb: bool = True,
) -> Path:
    """Write digits as image files under ``root`` and return it.

    ``classes``: how many digit classes (0..n-1) or which ones; folders are named ``digit_<d>``.
    ``per_class``: images per class (None: all, about 180). ``formats``: file types used in turn
    (``png``, ``jpg``). ``layout``: ``flat`` writes ``root/<class>/<file>``; ``splits`` writes
    ``root/{train,val,test}/<class>/<file>`` (70/15/15 of each class, in file order).
    """
    import numpy as np
    from PIL import Image, ImageFilter

    from kiln.data.digits import load_digits_arrays

    root = Path(root)
    images, labels = load_digits_arrays()
    wanted = list(range(classes)) if isinstance(classes, int) else list(classes)
    for digit in wanted:
        rows = images[labels == digit][:per_class]
        for i, row in enumerate(rows):
            pixels = (row.reshape(8, 8) / 16.0 * 255.0).astype(np.uint8)
            image = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.NEAREST)
            image = image.filter(ImageFilter.GaussianBlur(radius=size / 32))
            if rgb:  # a tint per class, so colour carries information too
                tint = (255, 255 - 20 * (digit % 5), 255 - 20 * (digit // 5))
                image = Image.merge("RGB", [image.point(lambda v, t=t: v * t // 255) for t in tint])
            fmt = formats[i % len(formats)]
            folder = root / _split_of(i, len(rows), layout) / f"digit_{digit}"
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{digit}_{i:04d}.{fmt}", quality=95)  # PNG ignores quality
    return root


def _split_of(i: int, n: int, layout: Layout) -> str:
    if layout == "flat":
        return ""
    if i < round(n * 0.7):
        return "train"
    return "val" if i < round(n * 0.85) else "test"
