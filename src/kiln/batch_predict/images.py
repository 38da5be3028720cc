"""A directory of images, recursive, in sorted order of their paths relative to it.

Each file goes through the server's own image path (``kiln.serve.inputs.Preprocessor.from_image``:
kiln's one decode, then the package's saved resize, crop and normalization), so a file predicted
here gets the probabilities ``POST /predict`` gives the same bytes. Decoding runs on ``workers``
threads (Pillow and torchvision release the GIL while they work). Files are identified by their
relative path; hidden files and folders are left out, as training's scan does, and files that are
not images by their suffix are counted once in a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kiln.batch_predict.chunk import Chunk
from kiln.data.images.scan import IMAGE_SUFFIXES
from kiln.errors import InputError, UsageError

log = logging.getLogger("kiln")
PATH = "path"


def list_images(root: Path) -> tuple[list[str], int]:
    """``(relative posix paths of the images, count of other files)``, sorted."""
    found: list[str] = []
    others = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(folder, name).relative_to(root).as_posix())
            else:
                others += 1
    return sorted(found), others


class ImageFolderSource:
    key = PATH
    kind = "images"
    total_bytes = None
    read_bytes = 0

    def __init__(self, root: Path, pre: Any, workers: int) -> None:
        if not pre.image_model:
            raise UsageError(f"{root} is a folder of images, but the model takes "
                             f"{list(pre.shape)} numbers per row, not images: give a CSV, Parquet, "
                             ".npy or JSON lines file")
        self.root = root
        self.pre = pre
        self.workers = max(1, workers)
        self.paths, others = list_images(root)
        if not self.paths:
            raise UsageError(f"{root} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, "
                             "recursively)")
        if others:
            log.warning("%s: %d files are not images by their suffix and are left out", root, others)
        self.total_rows = len(self.paths)

    def chunks(self, size: int, skip: int) -> Iterator[Chunk | None]:
        import pyarrow as pa

        with ThreadPoolExecutor(self.workers) as pool:
            for index, start in enumerate(range(0, len(self.paths), size)):
                if index < skip:
                    yield None
                    continue
                names = self.paths[start:start + size]
                decoded = list(pool.map(self._decode, names))
                good = [(name, x) for name, x in zip(names, decoded, strict=True) if not isinstance(x, str)]
                errors = [{PATH: name, "reason": x} for name, x in zip(names, decoded, strict=True)
                          if isinstance(x, str)]
                batch = (np.concatenate([x for _, x in good]) if good
                         else np.zeros((0, *self.pre.shape), dtype=np.float32))
                ids = pa.table({PATH: pa.array([name for name, _ in good], pa.string())})
                yield Chunk(index, len(names), ids, np.ascontiguousarray(batch, dtype=np.float32), errors)

    def _decode(self, name: str) -> Any:
        """The model's input for one file, or the reason it has none."""
        try:
            data = (self.root / name).read_bytes()
        except OSError as exc:
            return f"cannot read the file: {exc.strerror or exc}"
        try:
            return self.pre.from_image(data, None)
        except InputError as exc:  # the server's words, about a file rather than an upload
            return str(exc).replace("the upload (content type unknown)", "the file")
