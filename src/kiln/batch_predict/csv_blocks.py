"""A CSV file's data lines, read in blocks of about a MiB that end at a line end, each parsed by
pyarrow the fast way (features as float64, on every core) or, when the fast way fails on the
block (a value that is not a number, a line of the wrong length), the careful way: as text, on
one thread, each malformed line named with its row. The next block is read the fast way again,
so a bad value costs the rows of its own block, not the rest of the file.

Why blocks cut here rather than pyarrow's streaming reader (``open_csv``): after an error that
reader cannot go on, and it does not tell at which byte its batches begin, so the fast read could
only be restarted from the top of the file. Cut here, each block's offset and first row are
known, and each parse is ``read_csv`` of one block. The cut is pyarrow's own (``newlines_in_values``
off: after the last ``\\n`` or ``\\r`` of the block), so a quoted newline is taken where pyarrow
took it. The careful read's row numbers are pyarrow's too (a block's parsed rows and malformed
lines), so they are the fast read's.

Measured on the shared 2-core VM, a 78 MB digits CSV (200,000 rows, id + 64 numbers): parsing
alone, 362 ms a read against 359 ms for the streaming reader; into chunks of 10,000 rows, median
of 30 reads each, interleaved, 0.64 s against 0.57 s, and 0.71 s without the read-ahead thread
(the machine was busy: single reads ranged from 0.44 to 1.27 s).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from kiln.batch_predict.pieces import ROW, Piece
from kiln.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("kiln")

BLOCK_BYTES = 1 << 20
READ_AHEAD = 2  # blocks parsed ahead of the one handed out
CAREFUL_RUN = 16  # most blocks read carefully in a row, bad values or not, before a fast try


class CsvBlocks:
    """The pieces of one read of ``path``; ``columns`` are the header's names, ``features`` the
    columns parsed as numbers (the others stay text, so an id such as ``007`` is kept as written).
    """

    def __init__(self, path: Path, columns: Sequence[str], features: Sequence[str],
                 block_bytes: int = BLOCK_BYTES) -> None:
        import pyarrow as pa

        self.path = path
        self.columns = list(columns)
        self.block_bytes = block_bytes
        self._types = {c: (pa.float64() if c in features else pa.string()) for c in self.columns}
        self.read_bytes = 0  # bytes of the file handed out in pieces, the header's included
        self.careful: list[tuple[int, int]] = []  # (first row, rows) of each block read as text
        self.fast_failures = 0  # blocks the fast read was tried on and failed
        self._failed = 0  # fast tries failed in a row (the read-ahead thread's, like _skip_fast)
        self._skip_fast = 0  # blocks still to read carefully without a fast try

    def pieces(self) -> Iterator[Piece]:
        """One piece per block, in file order; rows are numbered from 0, the line after the header.

        The next blocks are read and parsed on a thread while the caller works on this one (pyarrow
        parses without the GIL), as pyarrow's streaming reader reads ahead. ``read_bytes`` counts
        a block when its piece is handed out, so it only grows and ends at the file's size."""
        from concurrent.futures import ThreadPoolExecutor

        row = 0
        with open(self.path, "rb") as handle, ThreadPoolExecutor(1, thread_name_prefix="kiln-csv") as pool:
            self.read_bytes = _skip_header(handle)
            blocks = _blocks(handle, self.block_bytes)  # advanced by the one thread only: in file order
            ahead = deque(pool.submit(self._parse, blocks) for _ in range(READ_AHEAD))
            try:
                while (parsed := ahead.popleft().result()) is not None:
                    ahead.append(pool.submit(self._parse, blocks))
                    size, table, malformed = parsed
                    piece = _piece(row, table, malformed)
                    if malformed is not None:
                        self.careful.append((row, piece.rows))
                        log.debug("%s: rows %d to %d read as text, to name the bad ones", self.path, row,
                                  row + piece.rows - 1)
                    self.read_bytes += size
                    row += piece.rows
                    yield piece
            finally:
                for future in ahead:
                    future.cancel()

    def _parse(self, blocks: Iterator[bytes]) -> tuple[int, pa.Table, list[tuple[int, str]] | None] | None:
        """The next block's size and table, and its malformed lines when it was read the careful
        way (None: the fast way); None at the end of the file."""
        block = next(blocks, None)
        if block is None:
            return None
        if self._skip_fast:
            self._skip_fast -= 1
        else:
            table = self._fast(block)
            if table is not None:
                self._failed = 0
                return len(block), table, None
            # A failed fast try costs about a parse. Where bad values are dense (every block
            # holds one), each failure in a row doubles the blocks read carefully before the next
            # try (0, 1, 3, 7, then 15): such a file costs about the careful read alone, and a
            # lone bad value still costs its own block only.
            self._skip_fast = min(1 << self._failed, CAREFUL_RUN) - 1
            self._failed += 1
            self.fast_failures += 1
        table, malformed = self._careful(block)
        return len(block), table, malformed

    def _read_options(self, block: bytes, threads: bool) -> Any:
        """The header's names (the block has none), and the block as one piece of work for pyarrow
        even when a line longer than ``block_bytes`` made it longer."""
        import pyarrow.csv as pacsv

        return pacsv.ReadOptions(column_names=self.columns, block_size=max(self.block_bytes, len(block)),
                                 use_threads=threads)

    def _fast(self, block: bytes) -> pa.Table | None:
        """The block with its features as float64 (empty is null; "nan" and "inf" are numbers),
        or None when a line or value needs the careful read."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        try:
            return pacsv.read_csv(
                pa.py_buffer(block),
                read_options=self._read_options(block, threads=True),
                parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types=self._types, strings_can_be_null=True,
                                                     null_values=[""]))
        except pa.ArrowInvalid:
            return None

    def _careful(self, block: bytes) -> tuple[pa.Table, list[tuple[int, str]]]:
        """The block as text, and its malformed lines: ``(line in the block from 0, reason)``."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        malformed: list[tuple[int, str]] = []
        expected = len(self.columns)

        def on_invalid(row: Any) -> str:
            if row.number is None:  # only multi-threaded parsing loses it, and this one is not
                raise DataError(f"{self.path}: a line has {row.actual_columns} values, not {expected}")
            malformed.append((row.number - 1, f"has {row.actual_columns} values, the header has "
                                              f"{row.expected_columns}"))  # row.number counts from 1
            return "skip"

        try:
            table = pacsv.read_csv(
                pa.py_buffer(block),
                read_options=self._read_options(block, threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in self.columns},
                                                     strings_can_be_null=True, null_values=[""]))
        except pa.ArrowInvalid as exc:
            raise DataError(f"{self.path} cannot be read as CSV: {str(exc).splitlines()[0]}") from None
        return table, malformed


def _piece(first: int, table: pa.Table, malformed: list[tuple[int, str]] | None) -> Piece:
    """A block's piece, its rows numbered from ``first``: a blank line is a row of nulls, so the
    block's rows are its parsed rows and its malformed lines."""
    if malformed is None:
        rows = table.num_rows
        return Piece(first, rows, np.arange(first, first + rows, dtype=np.int64), table, [])
    rows = table.num_rows + len(malformed)
    parsed = np.ones(rows, dtype=bool)
    parsed[[line for line, _ in malformed]] = False
    numbers = np.arange(first, first + rows, dtype=np.int64)[parsed]
    errors = [{ROW: first + line, "reason": f"line {first + line + 2} {reason}"} for line, reason in malformed]
    return Piece(first, rows, numbers, table, errors, careful=True)


_HEADER_END = re.compile(rb'["\r\n]')


def _skip_header(handle: BinaryIO) -> int:
    """Move ``handle`` past the header line (its line end included; a quoted newline does not end
    it) and return that offset. The header's names are read by the csv module (TableSource)."""
    head = b""
    while True:
        more = handle.read(BLOCK_BYTES)
        head += more
        quoted = False
        for found in _HEADER_END.finditer(head):
            char = found.group()
            if char == b'"':
                quoted = not quoted
            elif not quoted:
                end = found.end()
                if char == b"\r" and end == len(head) and more:
                    break  # a \n may follow in the next read: read on
                if char == b"\r" and head[end:end + 1] == b"\n":
                    end += 1
                handle.seek(end)
                return end
        if not more:  # the header is the whole file
            return len(head)


def _blocks(handle: BinaryIO, size: int = BLOCK_BYTES) -> Iterator[bytes]:
    """The rest of the file in blocks of whole lines, about ``size`` bytes each (a line longer
    than that is a block of its own)."""
    pending: list[bytes] = []
    while data := handle.read(size):
        # a \r ending the read may be the first half of \r\n: it stays with the next block
        searched = len(data) - 1 if data.endswith(b"\r") else len(data)
        end = max(data.rfind(b"\n", 0, searched), data.rfind(b"\r", 0, searched)) + 1
        if end == 0:
            pending.append(data)
            continue
        yield b"".join([*pending, data[:end]])
        pending = [data[end:]]
    rest = b"".join(pending)
    if rest:
        yield rest
