"""What every input source hands the prediction loop: a ``Chunk`` of rows, ready for the model.

A chunk covers a fixed number of consecutive input rows (``size``), so a run killed part-way can
skip exactly the chunks it committed: chunk ``k`` always holds rows ``k*size .. (k+1)*size - 1``
of the same input. The rows that could be turned into model inputs are in ``batch`` (with their
identifiers in ``ids``, in input order); the others are in ``errors`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from kiln.serve.backends import Array


@dataclass
class Chunk:
    """One committed unit of a prediction job."""

    index: int
    rows: int  # input rows it covers, predicted or not
    ids: pa.Table  # the identifiers of the rows in ``batch`` (row number, pass-through columns, path)
    batch: Array  # float32 [len(ids), *input_shape], normalized as training did
    errors: list[dict[str, Any]] = field(default_factory=list)  # {"row"|"path": ..., "reason": ...}


def problem_rows(reasons: list[str | None], first_row: int, ids: pa.Table | None = None,
                 key: str = "row") -> list[dict[str, Any]]:
    """The errors-file records for the rows whose reason is not None."""
    out: list[dict[str, Any]] = []
    for index, reason in enumerate(reasons):
        if reason is not None:
            ident = ids.column(key)[index].as_py() if ids is not None else first_row + index
            out.append({key: ident, "reason": reason})
    return out


def make_chunk(index: int, rows: int, ids: pa.Table, values: Any, reasons: list[str | None],
               pre: Any, errors: list[dict[str, Any]] | None = None, key: str = "row") -> Chunk:
    """A chunk from the float64 values of its parseable rows (``[n, ...]``, any layout of the
    model's input size), their identifiers and one reason per row (None: fine).

    Normalization is the server's own (``Preprocessor.normalize``); a row that turns non-finite
    there (a value beyond float32) gets a reason too, so the model never sees it.
    """
    import numpy as np

    batch = pre.normalize(np.asarray(values, dtype=np.float64).reshape(len(values), *pre.shape))
    # over every axis but the first: reshape(0, -1) is an error, so a chunk without a row to
    # predict (its lines all blank or malformed) would fail
    overflow = ~np.isfinite(batch).all(axis=tuple(range(1, batch.ndim)))
    for i in np.flatnonzero(overflow).tolist():
        if reasons[i] is None:
            reasons[i] = "a value is too large for float32 once normalized; send finite numbers within 3.4e38"
    found = list(errors or [])
    found.extend(problem_rows(reasons, 0, ids, key))
    keep = np.array([r is None for r in reasons], dtype=bool)
    if not keep.all():
        import pyarrow as pa

        ids = ids.filter(pa.array(keep))
        batch = batch[keep]
    found.sort(key=lambda e: (e.get("row", 0), str(e.get("path", ""))))
    return Chunk(index, rows, ids, np.ascontiguousarray(batch), found)
