"""``kiln.predict(model, inputs)``: the batch job's code for notebooks and pipelines, in memory.

>>> probabilities = kiln.predict("runs/digits_mlp_20261123_101500", x)  # doctest: +SKIP
>>> frame = kiln.predict("models:/churn@champion", customers_df)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kiln.batch_predict.job import OnError, _predict_chunk, predict_batches
from kiln.batch_predict.model import load_for_prediction
from kiln.errors import DataError, UsageError


def predict(model: str | Path, inputs: Any, *, backend: str | None = None, batch_size: int = 256,
            top_k: int = 1, id_columns: Sequence[str] = (), workers: int = 2,
            threads: int = 0, on_error: OnError = "fail") -> Any:
    """Predict ``inputs`` with ``model`` (a run directory, ``models:/NAME@ALIAS``, an export file).

    - a NumPy array ``[N, *input_shape]`` (or ``[N, features]``), in dataset units as for
      ``POST /predict``: returns the probabilities ``[N, classes]`` (binary: ``[N, 2]``;
      regression: the values ``[N]``), the numbers the server answers;
    - a pandas DataFrame or pyarrow Table (feature columns by name, others passed through), or the
      path of a CSV, Parquet, ``.npy``/``.npz``, JSON lines file or image folder: returns a
      DataFrame with ``kiln predict``'s output columns.

    A bad row raises DataError naming it (``on_error="fail"``), or is left out of the result
    (``"skip"``; the ``row`` column says which rows are there).
    """
    if on_error not in ("fail", "skip"):
        raise UsageError(f"on_error={on_error!r}", allowed="'fail' or 'skip'")
    loaded = load_for_prediction(model, backend, batch_size, threads)
    if isinstance(inputs, np.ndarray):
        return _predict_array(loaded, inputs, on_error)
    source = _source(loaded, inputs, id_columns, workers)
    tables = []
    from kiln.batch_predict.sources import chunk_size

    for chunk in source.chunks(chunk_size(source, None), skip=0):
        assert chunk is not None
        table, errors = _predict_chunk(loaded, chunk, top_k)
        if errors and on_error == "fail":
            raise DataError(_describe(errors[0]))
        tables.append(table)
    import pyarrow as pa

    return pa.concat_tables(tables).to_pandas() if tables else pa.table({}).to_pandas()


def _predict_array(loaded: Any, array: np.ndarray, on_error: OnError) -> np.ndarray:
    """Probabilities in the array's row order; with ``on_error="skip"`` a bad row's are NaN, so
    the result still lines up with the input."""
    from kiln.batch_predict.arrays import ArraySource

    source = ArraySource(None, loaded.pre, array)
    spec = loaded.served.spec
    width = 2 if spec.task == "binary" else spec.output_size
    out = np.full((len(array), width), np.nan, dtype=np.float32)
    for chunk in source.chunks(max(len(array), 1), skip=0):
        assert chunk is not None
        if chunk.errors and on_error == "fail":
            raise DataError(_describe(chunk.errors[0]))
        out[chunk.ids.column("row").to_numpy()] = predict_batches(loaded, chunk)
    return out[:, 0] if spec.task == "regression" else out


def _source(loaded: Any, inputs: Any, id_columns: Sequence[str], workers: int) -> Any:
    from kiln.batch_predict.sources import open_source
    from kiln.batch_predict.tables import TableSource, refuse_repeated_columns

    if isinstance(inputs, (str, Path)):
        return open_source(Path(inputs), loaded, id_columns, workers)
    import pyarrow as pa

    if not isinstance(inputs, pa.Table):
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas comes with mlflow
            pd = None
        if pd is None or not isinstance(inputs, pd.DataFrame):
            raise UsageError(f"cannot predict a {type(inputs).__name__}",
                             allowed="a NumPy array, a pandas DataFrame, a pyarrow Table, or the "
                                     "path of a file or image folder")
        refuse_repeated_columns([str(c) for c in inputs.columns], "the DataFrame")
        inputs = pa.Table.from_pandas(inputs, preserve_index=False)
    names = loaded.served.spec.extra.get("feature_names")
    return TableSource(None, loaded.pre, names, id_columns, table=inputs)


def _describe(error: dict[str, Any]) -> str:
    where = f"row {error['row']}" if "row" in error else str(error.get("path"))
    return f"{where}: {error['reason']} (on_error='skip' predicts the other rows)"
