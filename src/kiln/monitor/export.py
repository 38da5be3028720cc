"""``kiln monitor export``: the prediction log, joined with its feedback, as CSV or Parquet.

One row per logged prediction: its columns in the log (time as a UTC timestamp), the feedback
label when one arrived (``label``, ``label_name``, ``correct``; empty otherwise), and the input
summary spread into columns (``feature_0`` ..., or ``channel_mean_0`` ..., ``channel_std_0`` ...).
``input`` (JSON) appears when the server ran with ``--log-inputs``. Read in chunks, written to a
temporary file renamed into place, so a large log streams and a failed export leaves nothing.
The log is opened read-only: exporting from a running server's state directory is safe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kiln.errors import PathError, UsageError
from kiln.monitor.store import DB_NAME, connect

FORMATS = (".csv", ".parquet")
CHUNK = 10_000
QUERY = ("SELECT p.request_id, p.item, p.time, p.model, p.version, p.class, p.class_name, "
         "p.probability, p.value, f.label, f.label_name, f.correct, p.summary, p.input "
         "FROM predictions p LEFT JOIN feedback f ON f.request_id = p.request_id AND f.item = p.item "
         "ORDER BY p.time, p.rowid")


def find_log(path: Path) -> Path:
    """The log database for a state directory, a run directory (its ``serve_state/``) or the
    database file itself; PathError naming the places looked at."""
    if path.is_file():
        return path
    if not path.exists():
        raise PathError(f"{path} does not exist: pass a serve state directory (--state-dir), a run "
                        "directory served by kiln serve, or its monitor.db")
    candidates = (path / DB_NAME, path / "serve_state" / DB_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise PathError(f"no prediction log in {path}: looked for {' and '.join(map(str, candidates))}",
                    hint="kiln serve writes it unless --no-prediction-log; a models:/ URI's log is "
                         "in ~/.local/state/kiln/serve/NAME/ unless --state-dir was given")


def export_log(source: Path, output: Path) -> int:
    """Write the log found at ``source`` to ``output`` (.csv or .parquet); the rows written."""
    import pyarrow as pa

    suffix = output.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the output format of {output}: use a name ending in "
                         f"{' or '.join(FORMATS)}")
    if not output.parent.is_dir():
        raise PathError(f"{output.parent} is not a directory: create it, or write elsewhere")
    connection = connect(find_log(source), readonly=True)
    try:
        widths, has_inputs = _shape(connection)
        schema = _schema(pa, widths, has_inputs)
        partial = output.with_name(f".{output.name}.partial")
        rows = 0
        with _writer(suffix, partial, schema) as write:
            cursor = connection.execute(QUERY)
            while chunk := cursor.fetchmany(CHUNK):
                write(pa.Table.from_pylist([_row(r, widths, has_inputs) for r in chunk], schema))
                rows += len(chunk)
        os.replace(partial, output)
    except BaseException:
        Path(output.with_name(f".{output.name}.partial")).unlink(missing_ok=True)
        raise
    finally:
        connection.close()
    return rows


def _shape(connection: Any) -> tuple[dict[str, int], bool]:
    """The summary keys with their longest length, and whether any row holds its input."""
    widths: dict[str, int] = {}
    for (text,) in connection.execute("SELECT DISTINCT summary FROM predictions"):
        for key, values in json.loads(text).items():
            widths[key] = max(widths.get(key, 0), len(values))
    has_inputs = connection.execute("SELECT 1 FROM predictions WHERE input IS NOT NULL LIMIT 1").fetchone()
    return widths, has_inputs is not None


def _schema(pa: Any, widths: dict[str, int], has_inputs: bool) -> Any:
    fields = [
        ("request_id", pa.string()), ("item", pa.int64()), ("time", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()), ("version", pa.string()), ("class", pa.int64()),
        ("class_name", pa.string()), ("probability", pa.float64()), ("value", pa.float64()),
        ("label", pa.int64()), ("label_name", pa.string()), ("correct", pa.bool_()),
    ]
    fields += [(f"{key}_{i}", pa.float32()) for key, width in widths.items() for i in range(width)]
    if has_inputs:
        fields.append(("input", pa.string()))
    return pa.schema(fields)


def _row(record: tuple[Any, ...], widths: dict[str, int], has_inputs: bool) -> dict[str, Any]:
    from datetime import datetime, timezone

    (request_id, item, when, model, version, cls, class_name, probability, value,
     label, label_name, correct, summary, raw) = record
    row: dict[str, Any] = {
        "request_id": request_id, "item": item, "time": datetime.fromtimestamp(when, timezone.utc),
        "model": model, "version": version, "class": cls, "class_name": class_name,
        "probability": probability, "value": value, "label": label, "label_name": label_name,
        "correct": None if correct is None else bool(correct),
    }
    values = json.loads(summary)
    for key, width in widths.items():
        got = values.get(key, [])
        for i in range(width):
            row[f"{key}_{i}"] = got[i] if i < len(got) else None
    if has_inputs:
        row["input"] = raw
    return row


class _writer:
    """A context manager giving ``write(table)`` for CSV or Parquet, closed on exit."""

    def __init__(self, suffix: str, path: Path, schema: Any) -> None:
        self.suffix, self.path, self.schema = suffix, path, schema

    def __enter__(self) -> Any:
        if self.suffix == ".parquet":
            import pyarrow.parquet as pq

            self.sink = pq.ParquetWriter(self.path, self.schema)
        else:
            import pyarrow.csv as pcsv

            self.sink = pcsv.CSVWriter(self.path, self.schema)
        return self.sink.write_table

    def __exit__(self, *exc: object) -> None:
        self.sink.close()
