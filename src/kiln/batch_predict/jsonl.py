"""JSON lines input: one instance per line, in ``POST /predict``'s instance format (a nested list of
the model's input shape, or its values flat). Row ``n`` is line ``n + 1``; a blank line is skipped
(keeping its number), and a line that is not such a list (not JSON, ragged, not numbers, the wrong
count) is a bad row with the reason.
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
                    # blank lines are not instances: skipped, neither predicted nor an error, and
                    # they keep their numbers (row = line - 1 for every other line)
                    numbers = [index * size + i for i, line in enumerate(block) if line.strip()]
                    kept = [line for line in block if line.strip()]
                    values = np.full((len(kept), self.pre.size), np.nan)
                    reasons: list[str | None] = [self._parse(line, values, i) for i, line in enumerate(kept)]
                    finite = array_reasons(np.where(np.array([r is None for r in reasons], dtype=bool)[:, None],
                                                    values, 0.0))
                    reasons = [r if r is not None else f for r, f in zip(reasons, finite, strict=True)]
                    ids = pa.table({"row": pa.array(numbers, pa.int64())})
                    yield make_chunk(index, len(block), ids, values, reasons, self.pre)
                index += 1
        finally:
            self._counter.close()

    def _parse(self, line: bytes, values: Any, i: int) -> str | None:
        import orjson

        text = line.strip()
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
