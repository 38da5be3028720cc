"""CSV and Parquet inputs, read in a stream by pyarrow: memory holds a chunk, not the file.

Which columns are features: the model's own feature names (``DataSpec.extra["feature_names"]``,
every ``data.name: csv`` model), found by name in any order, every other column passed through to
the output (an id, the true label); for a model without names (digits, a user's dataset), every
column except the ``--id-column`` ones, which must then be as many as the model's inputs.

A CSV's other columns are read as text: an identifier such as ``007`` reaches the output as
written. A bad value fails its row, not the file. Rows are numbered from 0, the first line after
the header (``row`` in the output and the errors file; line = row + 2); a line whose every value
is empty (a blank line) is skipped, neither predicted nor an error, and keeps its number. A line
with too few or too many values is a bad row too: pyarrow's parser reports it with its line,
single-threaded, so the numbering stays exact (``kiln.batch_predict.csv_blocks``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kiln.batch_predict.chunk import Chunk, make_chunk
from kiln.batch_predict.csv_blocks import CsvBlocks
from kiln.batch_predict.features import table_features
from kiln.batch_predict.pieces import ROW, Piece, group
from kiln.errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa


def feature_columns(columns: Sequence[str], spec_names: Sequence[str] | None, size: int,
                    id_columns: Sequence[str], what: str) -> tuple[list[str], list[str]]:
    """``(features, pass_through)``; UsageError (exit 2) naming what is missing or extra."""
    unknown_ids = [c for c in id_columns if c not in columns]
    if unknown_ids:
        raise UsageError(f"--id-column {', '.join(unknown_ids)}: no such column in {what}; "
                         f"its columns are {', '.join(columns)}")
    if spec_names:
        missing = [n for n in spec_names if n not in columns]
        if missing:
            raise UsageError(
                f"{what} lacks {len(missing)} of the model's {len(spec_names)} feature columns: "
                f"{_some(missing)}. The model was trained on columns named {_some(spec_names)}; "
                "rename the columns or give the right file")
        clash = [c for c in id_columns if c in spec_names]
        if clash:
            raise UsageError(f"--id-column {', '.join(clash)} is one of the model's features")
        return list(spec_names), [c for c in columns if c not in spec_names]
    features = [c for c in columns if c not in id_columns]
    if len(features) != size:
        raise UsageError(
            f"the model takes {size} values per row and records no feature names, but {what} has "
            f"{len(features)} columns besides the --id-column ones ({', '.join(features[:8])}"
            f"{' ...' if len(features) > 8 else ''}): name the identifier columns with "
            "--id-column NAME, or give a table with exactly the model's inputs")
    return features, list(id_columns)


def _some(names: Sequence[str], shown: int = 10) -> str:
    listed = ", ".join(map(repr, names[:shown]))
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


class TableSource:
    """A CSV or Parquet file, or an in-memory pyarrow table (``kiln.predict`` on a DataFrame)."""

    key = ROW

    def __init__(self, path: Path | None, pre: Any, spec_names: Sequence[str] | None,
                 id_columns: Sequence[str], table: pa.Table | None = None) -> None:
        self.path = path
        self.pre = pre
        self._table = table
        self.kind = "table" if path is None else ("parquet" if path.suffix.lower() == ".parquet" else "csv")
        self._csv: CsvBlocks | None = None  # the CSV read under way
        what = "the table" if path is None else str(path)
        self.columns = self._column_names()
        self.features, self.passed = feature_columns(self.columns, spec_names, pre.size, id_columns, what)
        self.total_rows = self._rows()
        self.total_bytes = path.stat().st_size if path is not None and self.kind == "csv" else None

    @property
    def read_bytes(self) -> int:
        """Bytes of the CSV read so far, counted as each block's rows are handed on (the progress
        bar's position): only grows, and ends at the file's size."""
        return self._csv.read_bytes if self._csv is not None else 0

    @property
    def careful_blocks(self) -> list[tuple[int, int]]:
        """``(first row, rows)`` of each CSV block read as text (one holding a bad value or line,
        or a few after a run of such: ``csv_blocks``); the other blocks were read the fast way."""
        return list(self._csv.careful) if self._csv is not None else []

    def _column_names(self) -> list[str]:
        if self._table is not None:
            return list(self._table.column_names)
        assert self.path is not None
        try:
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                return list(pq.ParquetFile(self.path).schema_arrow.names)
            import csv

            # the header line alone, by the standard library: opening pyarrow's streaming reader
            # here would start its read-ahead thread for one line
            with open(self.path, newline="", encoding="utf-8-sig") as handle:
                header = next(csv.reader(handle), None)
            if not header:
                raise ValueError("the file is empty: the first line must name the columns")
            return header
        except Exception as exc:
            raise UsageError(f"{self.path} is not a readable {self.kind.upper()} table: "
                             f"{str(exc).splitlines()[0]}") from None

    def _rows(self) -> int | None:
        if self._table is not None:
            return int(self._table.num_rows)
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(self.path).metadata.num_rows)
        return None

    def chunks(self, size: int, skip: int) -> Iterator[Chunk | None]:
        """A CSV is read block by block (``kiln.batch_predict.csv_blocks``): the fast way, and a
        block holding a value that is not a number or a line of the wrong length the careful
        way, then the fast way again. A chunk may hold blocks of both kinds; its features are
        converted a run of same-kind blocks at a time."""
        pieces: Iterable[Piece]
        if self.kind == "csv":
            assert self.path is not None
            self._csv = CsvBlocks(self.path, self.columns, self.features)
            pieces = self._csv.pieces()
        else:
            pieces = self._table_pieces()
        for index, rows, parts in group(pieces, size):
            yield None if index < skip else self._chunk(index, rows, parts)

    def _chunk(self, index: int, rows: int, parts: list[Piece]) -> Chunk:
        import pyarrow as pa

        errors = [error for part in parts for error in part.errors]  # each part's in row order
        ids, values, reasons = [], [], []
        for _, run in itertools.groupby(parts, key=lambda part: part.careful):
            same = list(run)
            table = pa.concat_tables([part.table for part in same])
            numbers = np.concatenate([part.numbers for part in same])
            if self.kind == "csv" and table.num_rows:
                table, numbers = _without_blank_lines(table, numbers)
            if table.num_rows == 0:  # every row of the run was malformed (or blank)
                continue
            ids.append(table.select(self.passed).add_column(0, ROW, pa.array(numbers, type=pa.int64())))
            run_values, run_reasons = table_features(table, self.features)
            values.append(run_values)
            reasons.extend(run_reasons)
        if not ids:
            empty = {ROW: pa.array([], pa.int64()), **{c: pa.array([], pa.string()) for c in self.passed}}
            return make_chunk(index, rows, pa.table(empty), np.zeros((0, self.pre.size)), [], self.pre, errors)
        return make_chunk(index, rows, pa.concat_tables(ids) if len(ids) > 1 else ids[0],
                          np.concatenate(values), reasons, self.pre, errors)

    def _table_pieces(self) -> Iterator[Piece]:
        """A Parquet file's or an in-memory table's rows, a record batch at a time."""
        import pyarrow as pa

        if self._table is not None:
            batches = iter(self._table.to_batches(max_chunksize=65536))
        else:
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(self.path).iter_batches(batch_size=65536)
        start = 0
        for batch in batches:
            rows = batch.num_rows
            yield Piece(start, rows, np.arange(start, start + rows, dtype=np.int64),
                        pa.Table.from_batches([batch]), [])
            start += rows


def _without_blank_lines(table: pa.Table, numbers: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """Drop the rows of a CSV chunk where every value is empty: blank lines (a trailing newline
    too many, files joined with ``cat``) are not records. They keep their row numbers, so the
    other rows' numbers still match their lines."""
    import pyarrow as pa
    import pyarrow.compute as pc

    blank = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        blank &= pc.is_null(column).to_numpy(zero_copy_only=False)
        if not blank.any():
            return table, numbers
    return table.filter(pa.array(~blank)), numbers[~blank]
