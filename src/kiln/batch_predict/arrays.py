"""NumPy inputs: a ``.npy`` file (memory-mapped, so a file larger than memory is fine), an ``.npz``
archive's array, or an array in memory (``kiln.predict``). Rows are the first axis; each row is
the model's input shape or its values flat (784 for a 1x28x28 model), in dataset units as for
``POST /predict``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kiln.batch_predict.chunk import Chunk, make_chunk
from kiln.batch_predict.features import array_reasons
from kiln.errors import UsageError

NPZ_KEYS = ("x", "inputs", "features")  # the array taken from an archive holding several


class ArraySource:
    key = "row"
    total_bytes = None
    read_bytes = 0

    def __init__(self, path: Path | None, pre: Any, array: Any = None) -> None:
        self.path = path
        self.pre = pre
        self.kind = "array" if path is None else path.suffix.lower().lstrip(".")
        what = "the array" if path is None else str(path)
        data = array if path is None else _load(path)
        if data.dtype.kind not in "iufb":
            raise UsageError(f"{what} holds {data.dtype} values; the model takes numbers")
        shape = tuple(pre.shape)
        if data.ndim < 1 or data.shape[1:] not in (shape, (math.prod(shape),)):
            raise UsageError(f"{what} has shape {list(data.shape)}; the model takes rows of shape "
                             f"{list(shape)} or {math.prod(shape)} values, i.e. [N, "
                             f"{', '.join(map(str, shape))}] or [N, {math.prod(shape)}]")
        self.data = data
        self.total_rows = int(data.shape[0])

    def chunks(self, size: int, skip: int) -> Iterator[Chunk | None]:
        import pyarrow as pa

        for index in range(math.ceil(self.total_rows / size)):
            if index < skip:
                yield None
                continue
            start = index * size
            values = np.asarray(self.data[start:start + size], dtype=np.float64)
            ids = pa.table({"row": pa.array(np.arange(start, start + len(values)), pa.int64())})
            yield make_chunk(index, len(values), ids, values, array_reasons(values), self.pre)


def _load(path: Path) -> Any:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable NumPy file: {exc}") from None
    keys = list(archive.keys())
    if len(keys) == 1:
        return archive[keys[0]]
    for key in NPZ_KEYS:
        if key in keys:
            return archive[key]
    raise UsageError(f"{path} holds {len(keys)} arrays ({', '.join(keys)}); kiln predict takes the "
                     f"one named {' or '.join(NPZ_KEYS)}: save the inputs under one of those names")
