"""CSV and Parquet inputs, read in a stream by pyarrow: memory holds a chunk, not the file.

Which columns are features: the model's own feature names (``DataSpec.extra["feature_names"]``,
every ``data.name: csv`` model), found by name in any order, every other column passed through to
the output (an id, the true label); for a model without names (digits, a user's dataset), every
column except the ``--id-column`` ones, which must then be as many as the model's inputs.

A CSV is read as text, every column: an identifier such as ``007`` reaches the output as written,
and a bad value fails its row, not the file. Rows are numbered from 0, the first line after the
header (``row`` in the output and the errors file; line = row + 2); a line whose every value is
empty (a blank line) is skipped, neither predicted nor an error, and keeps its number. A line with too few or too
many values is a bad row too: pyarrow's parser reports it with its line, single-threaded, so the
numbering stays exact. A value that runs over lines (a quote left open takes the lines after it
into one value, to the next quote or the end of the file) stops the job: read on, those lines
would be lost with no error for any of them.
"""

from __future__ import annotations

import io
import logging
import re
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kiln.batch_predict.chunk import Chunk, make_chunk
from kiln.batch_predict.features import table_features
from kiln.errors import DataError, UsageError

log = logging.getLogger("kiln")

if TYPE_CHECKING:
    import pyarrow as pa

ROW = "row"
_BREAK = re.compile(r"\r\n|\r|\n")  # a line's end, as pyarrow's CSV parser takes it
BLOCK_BYTES = 1 << 20


class CountingFile(io.RawIOBase):
    """A binary file that counts the bytes read from it (the progress bar's position)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by close())
        self.read_bytes = 0

    def readinto(self, buffer: Any) -> int:
        count = self._file.readinto(buffer) or 0
        self.read_bytes += count
        return count

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()
        super().close()


def feature_columns(columns: Sequence[str], spec_names: Sequence[str] | None, size: int,
                    id_columns: Sequence[str], what: str) -> tuple[list[str], list[str]]:
    """``(features, pass_through)``; UsageError (exit 2) naming what is missing, extra or twice."""
    refuse_repeated_columns(columns, what)
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


def refuse_repeated_columns(columns: Sequence[str], what: str) -> None:
    """UsageError (exit 2) naming the columns that appear more than once: a column is found by
    its name (pyarrow's own error was a KeyError traceback)."""
    from collections import Counter

    twice = [name for name, count in Counter(columns).items() if count > 1]
    if twice:
        raise UsageError(f"{what} has more than one column named {_some(twice)}: a column is found by "
                         "its name, so each needs its own; rename or drop the copies")


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
        self._counter: CountingFile | None = None
        what = "the table" if path is None else str(path)
        self.columns = self._column_names()
        self.features, self.passed = feature_columns(self.columns, spec_names, pre.size, id_columns, what)
        self.total_rows = self._rows()
        self.total_bytes = path.stat().st_size if path is not None and self.kind == "csv" else None
        self._most_read = 0

    @property
    def read_bytes(self) -> int:
        """Bytes read of the file: the most so far, so that the progress bar stands still, not
        back at zero, while the careful read goes over the chunks already handed out again."""
        if self._counter is not None:
            self._most_read = max(self._most_read, self._counter.read_bytes)
        return self._most_read

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
        """A CSV is first read the fast way: features parsed as numbers, on every core. The first
        value that is not a number or line of the wrong length stops that read; the rest is read
        again the careful way (text, one thread, malformed lines numbered), from the first chunk
        not yet handed out, so each bad row is found and named and the good ones cost no more."""
        if self.kind != "csv":
            yield from self._chunks(size, skip, careful=False)
            return
        handed = skip
        try:
            for index, chunk in enumerate(self._chunks(size, skip, careful=False)):
                yield chunk
                handed = index + 1
            return
        except _NotClean:
            log.info("%s holds a malformed line or a value that is not a number: reading it again "
                     "from chunk %d to find the bad rows", self.path, handed)
        for index, chunk in enumerate(self._chunks(size, max(skip, handed), careful=True)):
            if index >= handed:  # the chunks before were handed out already (None when skipped)
                yield chunk

    def _chunks(self, size: int, skip: int, careful: bool) -> Iterator[Chunk | None]:
        bad: deque[tuple[int, str]] = deque()  # malformed lines, in row order, until their chunk
        for index, numbers, table, rows in _group(self._pieces(bad, careful), size, bad):
            errors = []
            while bad and bad[0][0] < index * size + rows:  # the earlier chunks took theirs
                row, reason = bad.popleft()
                errors.append({ROW: row, "reason": reason})
            if index < skip:
                yield None
                continue
            import pyarrow as pa

            if self.kind == "csv" and table.num_rows:
                table, numbers = _without_blank_lines(table, numbers)
            if table.num_rows == 0:  # every row of the chunk was malformed (or blank)
                empty = {ROW: pa.array([], pa.int64()), **{c: pa.array([], pa.string()) for c in self.passed}}
                yield make_chunk(index, rows, pa.table(empty), np.zeros((0, self.pre.size)), [], self.pre, errors)
                continue
            ids = table.select(self.passed).add_column(0, ROW, pa.array(numbers, type=pa.int64()))
            values, reasons = table_features(table, self.features)
            yield make_chunk(index, rows, ids, values, reasons, self.pre, errors)

    def _pieces(self, bad: deque[tuple[int, str]], careful: bool) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
        """``(row numbers, record batch)`` in input order; malformed CSV lines land in ``bad``."""
        if self._table is not None:
            start = 0
            for batch in self._table.to_batches(max_chunksize=65536):
                yield np.arange(start, start + batch.num_rows), batch
                start += batch.num_rows
            return
        assert self.path is not None
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            start = 0
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=65536):
                yield np.arange(start, start + batch.num_rows), batch
                start += batch.num_rows
            return
        yield from (self._csv_pieces(bad) if careful else self._fast_csv_pieces())

    def _fast_csv_pieces(self) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
        """Features parsed as float64 by pyarrow on every core (empty is null, "nan" and "inf"
        are numbers); _NotClean at the first line or value that needs the careful read."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        types = {c: (pa.float64() if c in self.features else pa.string()) for c in self.columns}
        self._counter = CountingFile(self.path)  # type: ignore[arg-type]
        reader = None
        try:
            try:  # opening reads the first block already
                reader = pacsv.open_csv(
                    self._counter,
                    read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=True),
                    parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
                    convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                                         null_values=[""]),
                )
            except pa.ArrowInvalid as exc:
                raise _NotClean(str(exc)) from None
            start = 0
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as exc:
                    raise _NotClean(str(exc)) from None
                numbers = np.arange(start, start + batch.num_rows)
                _refuse_values_over_lines(self.path, batch, self.passed, numbers)  # type: ignore[arg-type]
                yield numbers, batch
                start += batch.num_rows
        finally:
            if reader is not None:
                reader.close()  # stops its read-ahead now, not at interpreter exit
            self._counter.close()

    def _csv_pieces(self, bad: deque[tuple[int, str]]) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
        """The careful read. pyarrow's one parsing thread reports malformed lines in file order,
        some a block ahead of the batch read; each batch's rows are numbered around them."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        expected = len(self.columns)
        over_lines: list[str] = []
        skipped: deque[int] = deque()  # malformed rows not yet numbered past: a block's worth at most

        def on_invalid(row: Any) -> str:
            if row.number is None:  # only multi-threaded parsing loses it, and this one is not
                raise DataError(f"{self.path}: a line has {row.actual_columns} values, not {expected}")
            if _BREAK.search((row.text or "").rstrip("\r\n")):  # raised after the batch: pyarrow swallows a handler's exception
                over_lines.append(_over_lines(self.path, row.number, row.text))  # type: ignore[arg-type]
            skipped.append(row.number - 2)
            bad.append((row.number - 2, f"line {row.number} has {row.actual_columns} values, the header "
                                        f"has {row.expected_columns}"))
            return "skip"

        self._counter = CountingFile(self.path)  # type: ignore[arg-type]
        reader = None
        try:
            reader = pacsv.open_csv(
                self._counter,
                read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in self.columns},
                    strings_can_be_null=True, null_values=[""]),
            )
            next_row = 0
            for batch in reader:
                if over_lines:
                    raise DataError(over_lines[0])
                count = batch.num_rows
                while skipped and skipped[0] < next_row:
                    skipped.popleft()
                pending = np.array(skipped, dtype=np.int64)
                candidates = np.arange(next_row, next_row + count + len(pending))
                numbers = candidates[~np.isin(candidates, pending)][:count]
                if count:
                    next_row = int(numbers[-1]) + 1
                _refuse_values_over_lines(self.path, batch, self.columns, numbers)  # type: ignore[arg-type]
                yield numbers, batch
            if over_lines:  # the rest of the file was that one malformed row: no batch came after it
                raise DataError(over_lines[0])
        except pa.ArrowInvalid as exc:
            if over_lines:
                raise DataError(over_lines[0]) from None
            raise DataError(_unreadable(self.path, str(exc))) from None  # type: ignore[arg-type]
        finally:
            if reader is not None:
                reader.close()
            self._counter.close()


def _refuse_values_over_lines(path: Path, batch: pa.RecordBatch, columns: Sequence[str],
                              numbers: np.ndarray) -> None:
    """DataError at the first value that holds a line break. A quote left open takes every line
    after it, to the next quote or the end of the file, into one value: read on, those lines would
    vanish with no error for any of them. kiln predict reads one row per line (so a row's line is
    its number + 2), and refuses the file instead."""
    import pyarrow.compute as pc

    first = None
    for name in columns:
        column = batch.column(name)
        hits = pc.match_substring_regex(column, _BREAK.pattern)
        if not pc.any(hits).as_py():  # the common case, without a NumPy copy of the column
            continue
        found = np.flatnonzero(hits.to_numpy(zero_copy_only=False) == True)  # noqa: E712 (nulls are None)
        if len(found) and (first is None or found[0] < first[0]):
            first = (int(found[0]), column[int(found[0])].as_py())
    if first is not None:
        raise DataError(_over_lines(path, int(numbers[first[0]]) + 2, first[1]))


def _over_lines(path: Path, line: int, text: str) -> str:
    spans = len(_BREAK.findall(text.rstrip("\r\n"))) + 1
    start = _BREAK.split(text, maxsplit=1)[0][:60]
    return (f"{path}, line {line}: a value runs over {spans} lines, from {start!r}. kiln predict "
            f"reads one row per line, and a quote that is never closed takes the lines after it "
            f"into one value, where they would be lost: close or remove the quote (or take the line "
            f"breaks out of the value), then run again with --overwrite (the chunks before it were "
            f"committed for this input)")


def _unreadable(path: Path, error: str) -> str:
    """The careful read's last word on a file it cannot go on reading."""
    first = error.splitlines()[0]
    if "out of sync with chunker" in first:  # a value over lines across pyarrow's block edge
        return (f"{path}: a value runs over lines (a quote that is never closed?) after the rows "
                "already done; kiln predict reads one row per line: find the quote, close or remove "
                "it, then run again with --overwrite")
    if "invalid UTF8" in first:
        line = re.search(r"Row #(\d+)", first)
        where = f", line {line[1]}" if line else ""
        return (f"{path}{where}: a value is not UTF-8 text ({first}). kiln predict reads a CSV as "
                "UTF-8: save it as UTF-8 (from Latin-1, for example: iconv -f latin1 -t utf-8 IN > OUT), "
                "then run again with --overwrite")
    return f"{path} cannot be read as CSV: {first}"


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


class _NotClean(Exception):
    """The fast CSV read met a line or value only the careful read can name."""


def _group(pieces: Iterator[tuple[np.ndarray, Any]], size: int,
           bad: deque[tuple[int, str]]) -> Iterator[tuple[int, np.ndarray, pa.Table, int]]:
    """Regroup pieces into chunks of ``size`` input rows: ``(index, row numbers, table, rows)``.

    A chunk's rows are those numbered ``index*size`` up to the next chunk's first; bad rows count
    (they are in ``bad``, not in the pieces), so chunks are the same whatever the reader's blocks.
    """
    import pyarrow as pa

    index, held_numbers, held = 0, [], []
    schema = None
    for numbers, batch in pieces:
        schema = batch.schema
        while True:
            end = (index + 1) * size
            k = int(np.searchsorted(numbers, end))
            if k:
                held_numbers.append(numbers[:k])
                held.append(batch.slice(0, k))
            if k == len(numbers):
                break
            numbers, batch = numbers[k:], batch.slice(k)
            yield index, _cat(held_numbers), pa.Table.from_batches(held, schema), size
            index, held_numbers, held = index + 1, [], []
    seen = [int(n[-1]) for n in held_numbers if len(n)]
    last = max([*seen, bad[-1][0] if bad else -1, index * size - 1])
    while index * size <= last or held:
        rows = min(size, last + 1 - index * size)
        table = pa.Table.from_batches(held, schema) if schema is not None else pa.table({})
        yield index, _cat(held_numbers), table, rows
        index, held_numbers, held = index + 1, [], []


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
