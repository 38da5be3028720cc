"""Feature values of a chunk of rows, as float64, with the reason each bad row cannot be predicted.

Columns are converted with pyarrow's cast (C++, fast) and only a column that holds a non-number
falls back to converting value by value, to find which rows hold it: bad rows are rare, and one
must not cost the whole file its speed. A row is bad when a feature is missing (empty or null),
not a number, NaN or infinite; its first problem is the reason given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    import pyarrow as pa

Reasons = list[str | None]


def table_features(table: pa.Table, names: Sequence[str]) -> tuple[npt.NDArray[np.float64], Reasons]:
    """``[rows, len(names)]`` float64 (NaN where a value is unusable) and one reason per row."""
    rows = table.num_rows
    values = np.empty((rows, len(names)), dtype=np.float64)
    reasons: Reasons = [None] * rows
    for j, name in enumerate(names):
        raw = table.column(name)
        column, text = _as_float(raw)
        values[:, j] = column
        bad = ~np.isfinite(column)
        if bad.any():
            missing = raw.is_null().to_numpy(zero_copy_only=False)
            for i in np.flatnonzero(bad).tolist():
                if reasons[i] is None:
                    given = text[i] if text is not None else None
                    reasons[i] = _reason(name, bool(missing[i]), given, column[i])
    return values, reasons


def array_reasons(values: npt.NDArray[np.float64]) -> Reasons:
    """Reasons for rows of an already numeric array ``[rows, features]``: NaN or infinity."""
    flat = values.reshape(len(values), int(np.prod(values.shape[1:])))  # (0, -1) would not do
    bad = ~np.isfinite(flat).all(axis=1)
    reasons: Reasons = [None] * len(values)
    for i in np.flatnonzero(bad).tolist():
        j = int(np.flatnonzero(~np.isfinite(flat[i]))[0])
        reasons[i] = f"value {j} is {float(flat[i, j])}: NaN and infinity cannot be predicted"
    return reasons


def _as_float(column: Any) -> tuple[npt.NDArray[np.float64], list[Any] | None]:
    """The column as float64 (nulls as NaN) and, when some value is not a number, the values as
    given (to name them in the reason); None when every value converted."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        converted = pc.cast(column, pa.float64())
        return converted.to_numpy(zero_copy_only=False).astype(np.float64, copy=False), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        given = column.to_pylist()
        return np.array([_number(v) for v in given], dtype=np.float64), given


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return float(value) if isinstance(value, bool) else float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _reason(name: str, missing: bool, given: Any, value: float) -> str:
    if missing:
        return f"feature {name!r} is missing"
    if given is not None and np.isnan(value) and not _is_nan_text(given):
        return f"feature {name!r} is not a number: {given!r}"
    return f"feature {name!r} is {float(value)}: NaN and infinity cannot be predicted"


def _is_nan_text(given: Any) -> bool:
    return isinstance(given, str) and given.strip().lower() in ("nan", "+nan", "-nan")
