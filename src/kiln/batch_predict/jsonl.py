"""JSON lines input: one instance per line, in ``POST /predict``'s instance format (a nested list of
the model's input shape, or its values flat). Row ``n`` is line ``n + 1``; a line that is not such
a list (empty, not JSON, ragged, not numbers, the wrong count) is a bad row with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kiln.batch_predict.chunk import Chunk, make_chunk
from kiln.batch_predict.features import array_reasons
from kiln.batch_predict.tables import CountingFile


class JsonLinesSource:
    key = "row"
    kind = "jsonl"
    total_rows = None

    def __init__(self, path: Path, pre: Any) -> None:
        self.path = path
        self.pre = pre
        self.total_bytes = path.stat().st_size
        self._counter: CountingFile | None = None

    @property
    def read_bytes(self) -> int:
        return self._counter.read_bytes if self._counter is not None else 0

    def chunks(self, size: int, skip: int) -> Iterator[Chunk | None]:
        import io

        import pyarrow as pa

        self._counter = CountingFile(self.path)
        try:
            lines = io.BufferedReader(self._counter, buffer_size=1 << 20)
            index = 0
            while True:
                block = [line for _, line in zip(range(size), lines, strict=False)]
                if not block:
                    return
                if index < skip:
                    yield None
                else:
                    start = index * size
                    values = np.full((len(block), self.pre.size), np.nan)
                    reasons: list[str | None] = []
                    for i, line in enumerate(block):
                        reason = self._parse(line, values, i)
                        reasons.append(reason)
                    finite = array_reasons(np.where(np.array([r is None for r in reasons])[:, None], values, 0.0))
                    reasons = [r if r is not None else f for r, f in zip(reasons, finite, strict=True)]
                    ids = pa.table({"row": pa.array(np.arange(start, start + len(block)), pa.int64())})
                    yield make_chunk(index, len(block), ids, values, reasons, self.pre)
                index += 1
        finally:
            self._counter.close()

    def _parse(self, line: bytes, values: Any, i: int) -> str | None:
        import orjson

        text = line.strip()
        if not text:
            return "the line is empty; each line must be one instance (a JSON list)"
        try:
            instance = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return f"the line is not valid JSON ({exc})"
        if not isinstance(instance, list):
            return (f"the line holds a JSON {type(instance).__name__}, not an instance: a list of "
                    f"{self.pre.size} numbers or nested lists of shape {list(self.pre.shape)}")
        try:
            array = np.asarray(instance)
        except (ValueError, TypeError):
            return "the instance is ragged (lists of unequal length)"
        if array.dtype.kind not in "iuf":  # as POST /predict: no strings, booleans or nulls
            return "the instance holds something other than numbers (strings, booleans, null or objects)"
        if array.size != self.pre.size or array.shape not in (tuple(self.pre.shape), (self.pre.size,)):
            return (f"the instance has shape {list(array.shape)}; the model takes "
                    f"{list(self.pre.shape)} or {math.prod(self.pre.shape)} values flat")
        values[i] = array.reshape(-1)
        return None
