"""The output columns of a chunk: its identifiers, then what the model said about each row.

- classification: ``class`` (index), ``class_name``, ``probability`` (of that class), and with
  ``top_k`` > 1 the next classes as ``class_2``, ``class_name_2``, ``probability_2``, ...;
- binary: ``class``, ``class_name`` and ``positive_probability`` (of class 1, whichever wins);
- regression: ``prediction``.

Probabilities are the float32 values the server answers with (``POST /predict``), so the two
agree to the last bit of the float32 and a CSV holds their shortest exact decimal form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from kiln.serve.backends import Array


def prediction_columns(probabilities: Array, task: str, class_names: Sequence[str],
                       top_k: int) -> dict[str, pa.Array]:
    """Columns for ``probabilities`` (``[rows, classes]``; regression ``[rows, 1]``)."""
    import pyarrow as pa

    names = np.asarray(class_names, dtype=object)
    if task == "regression":
        return {"prediction": pa.array(probabilities[:, 0], pa.float32())}
    if task == "binary":
        classes = (probabilities[:, 1] >= 0.5).astype(np.int64)
        return {"class": pa.array(classes), "class_name": pa.array(names[classes].tolist(), pa.string()),
                "positive_probability": pa.array(probabilities[:, 1], pa.float32())}
    k = max(1, min(top_k, probabilities.shape[1]))
    # argsort of the negated values is stable: ties go to the lower class index, as argmax does
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    columns: dict[str, pa.Array] = {}
    for rank in range(k):
        suffix = "" if rank == 0 else f"_{rank + 1}"
        classes = order[:, rank].astype(np.int64)
        chosen = np.take_along_axis(probabilities, order[:, rank:rank + 1], axis=1)[:, 0]
        columns["class" + suffix] = pa.array(classes)
        columns["class_name" + suffix] = pa.array(names[classes].tolist(), pa.string())
        columns["probability" + suffix] = pa.array(chosen, pa.float32())
    return columns


def output_table(ids: pa.Table, probabilities: Array, task: str, class_names: Sequence[str],
                 top_k: int) -> pa.Table:
    """``ids`` with the prediction columns appended (a name already in ``ids`` gets ``pred_``)."""
    table = ids
    for name, column in prediction_columns(probabilities, task, class_names, top_k).items():
        table = table.append_column(f"pred_{name}" if name in ids.column_names else name, column)
    return table
