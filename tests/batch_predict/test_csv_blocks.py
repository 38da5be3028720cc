"""The CSV read of ``kiln predict``, on real multi-MiB files: block by block, a block holding a bad
value or line read the careful way (as text) and the next ones the fast way again; the errors file
in row order however many lines are malformed; the progress bar's byte position only grows."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

from kiln.batch_predict import PredictOptions, predict_file
from kiln.batch_predict.csv_blocks import BLOCK_BYTES, CAREFUL_RUN, CsvBlocks, _blocks
from kiln.batch_predict.model import load_for_prediction
from kiln.batch_predict.sources import open_source
from kiln.batch_predict.tables import TableSource
from tests.batch_predict.conftest import digits_csv

ROWS = 12_000  # about 4.7 MB of digit rows: five blocks


def _lines(path: Path, rows: int) -> list[str]:
    digits_csv(path, rows)
    return path.read_text().splitlines()  # line = row + 1 here (the header is line 0)


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def _not_a_number(line: str) -> str:
    return line.replace(",", ",x", 1)  # p0 "0.0" becomes "x0.0"


def _source(run: Path, path: Path) -> TableSource:
    source = open_source(path, load_for_prediction(run, "torch", 256), ("id",), 1)
    assert isinstance(source, TableSource)
    return source


def test_one_bad_value_is_read_carefully_in_its_block_and_the_rest_fast(trained_run: Path,
                                                                       tmp_path: Path) -> None:
    """Row 5 holds "x0.0": its block alone is read as text (``careful_blocks``), the blocks after
    it the fast way; the output is the clean file's without row 5, byte for byte."""
    lines = _lines(tmp_path / "clean.csv", ROWS)
    spoiled = list(lines)
    spoiled[1 + 5] = _not_a_number(spoiled[1 + 5])
    _write(tmp_path / "in.csv", spoiled)

    source = _source(trained_run, tmp_path / "in.csv")
    assert sum(chunk.rows for chunk in source.chunks(1000, skip=0) if chunk is not None) == ROWS
    [(first, rows)] = source.careful_blocks  # one block read as text, the one holding row 5
    assert first == 0 and 5 < rows < ROWS // 3

    options = PredictOptions(id_columns=("id",), chunk_size=1000)
    report = predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv", options)
    assert (report.rows, report.predicted, report.failed) == (ROWS, ROWS - 1, 1)
    predict_file(trained_run, tmp_path / "clean.csv", tmp_path / "clean_out.csv", options)
    expected = (tmp_path / "clean_out.csv").read_text().splitlines()
    assert (tmp_path / "out.csv").read_text().splitlines() == expected[:1 + 5] + expected[1 + 6:]
    assert (tmp_path / "out.csv.errors.jsonl").read_text().splitlines() == [
        json.dumps({"row": 5, "reason": "feature 'p0' is not a number: 'x0.0'"}, separators=(",", ":"))]


def test_the_byte_position_only_grows_and_follows_the_rows(trained_run: Path, tmp_path: Path) -> None:
    """A bad value half-way (row 6,500) and a malformed line at the end: after each chunk the
    position is past that chunk's last line and less than a block beyond it, never lower than
    before, and the file's size at the end."""
    lines = _lines(tmp_path / "in.csv", ROWS)
    lines[1 + 6500] = _not_a_number(lines[1 + 6500])
    lines[ROWS] = ",".join(lines[ROWS].split(",")[:3])
    _write(tmp_path / "in.csv", lines)
    line_ends, end = [], len(lines[0]) + 1  # line_ends[r]: the byte after row r's line
    for line in lines[1:]:
        end += len(line) + 1
        line_ends.append(end)

    source = _source(trained_run, tmp_path / "in.csv")
    positions = []
    for chunk in source.chunks(500, skip=0):
        assert chunk is not None
        chunk_end = line_ends[chunk.index * 500 + chunk.rows - 1]
        assert chunk_end <= source.read_bytes < chunk_end + BLOCK_BYTES + 1000, (chunk.index, source.read_bytes)
        positions.append(source.read_bytes)
    assert positions == sorted(positions) and positions[-1] == (tmp_path / "in.csv").stat().st_size
    assert len(positions) == ROWS // 500 and len(source.careful_blocks) == 2


@pytest.mark.parametrize("chunk_size", [7, 1000, None])
def test_many_malformed_lines_are_all_listed_in_row_order(trained_run: Path, tmp_path: Path,
                                                          chunk_size: int | None) -> None:
    """Every other line malformed (too few or too many values) and a value that is not a number
    every 7th row among the others, over 20,000 rows: each bad row once, in row order, with its
    reason; the others predicted, in order. (That this costs linear time is measured, not
    tested: ``kiln.batch_predict.pieces``.)"""
    rows = 20_000
    lines = _lines(tmp_path / "in.csv", rows)
    expected = {}
    for row in range(rows):
        if row % 2:
            short = row % 4 == 1
            lines[1 + row] = ",".join(lines[1 + row].split(",")[:3]) if short else lines[1 + row] + ",1,2"
            expected[row] = f"line {row + 2} has {3 if short else 67} values, the header has 65"
        elif row % 7 == 0:
            lines[1 + row] = _not_a_number(lines[1 + row])
            expected[row] = "feature 'p0' is not a number: 'x0.0'"
    _write(tmp_path / "in.csv", lines)
    report = predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv",
                          PredictOptions(id_columns=("id",), chunk_size=chunk_size))
    assert (report.rows, report.failed) == (rows, len(expected))
    errors = [json.loads(line) for line in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert [(e["row"], e["reason"]) for e in errors] == sorted(expected.items())
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert out["row"].tolist() == [r for r in range(rows) if r not in expected]
    assert out["id"].tolist() == [f"{r:06d}" for r in out["row"]]


def test_dense_bad_values_space_out_the_fast_tries_which_come_back_after(tmp_path: Path) -> None:
    """Blocks of 4 KiB (about a dozen rows): a bad value every 5th row up to row 600, then none to
    row 3,000. Every block of the bad stretch is read carefully, with a few fast tries rather than
    one failed try per block, and the fast read is back within CAREFUL_RUN blocks after it."""
    lines = _lines(tmp_path / "in.csv", 3000)
    for row in range(0, 600, 5):
        lines[1 + row] = _not_a_number(lines[1 + row])
    _write(tmp_path / "in.csv", lines)
    columns = lines[0].split(",")
    reader = CsvBlocks(tmp_path / "in.csv", columns, columns[1:], block_bytes=4096)
    pieces = list(reader.pieces())
    assert sum(piece.rows for piece in pieces) == 3000 and len(pieces) > 200
    bad = [piece for piece in pieces if piece.first < 600]
    assert len(bad) > 40 and all(piece.careful for piece in bad)
    assert 1 < reader.fast_failures <= 8  # tries at blocks 0, 1, 3, 7, 15, 31, 47 (then 63: clean)
    after = [piece.careful for piece in pieces if piece.first >= 600]
    assert not any(after[CAREFUL_RUN:])
    assert reader.careful == [(piece.first, piece.rows) for piece in pieces if piece.careful]


def test_a_line_longer_than_a_block_is_read_whole(tmp_path: Path) -> None:
    """A 10,000-character id in blocks of 4 KiB: one block of its own, parsed as one."""
    lines = _lines(tmp_path / "in.csv", 40)
    lines[1 + 20] = "x" * 10_000 + lines[1 + 20][6:]
    lines[1 + 30] = _not_a_number(lines[1 + 30])  # and once the careful way
    lines[1 + 31] = "y" * 10_000 + lines[1 + 31][6:]
    _write(tmp_path / "in.csv", lines)
    columns = lines[0].split(",")
    pieces = list(CsvBlocks(tmp_path / "in.csv", columns, columns[1:], block_bytes=4096).pieces())
    ids = [value for piece in pieces for value in piece.table.column("id").to_pylist()]
    assert ids == [line.split(",")[0] for line in lines[1:]] and len(ids[20]) == len(ids[31]) == 10_000


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_blocks_end_at_line_ends_and_keep_every_byte(size: int) -> None:
    """Cut at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (pyarrow's line ends), never between the two
    bytes of ``\\r\\n`` (the second would start a blank line), a line longer than a block kept whole."""
    data = b"1,2\r\n3,4\r5,6\n\r\n7,8,9,10,11\r\n\r12\r\n"
    blocks = list(_blocks(io.BytesIO(data), size))
    assert b"".join(blocks) == data
    for block in blocks[:-1]:
        assert block.endswith((b"\n", b"\r")), blocks
    for before, after in itertools.pairwise(blocks):
        assert not (before.endswith(b"\r") and after.startswith(b"\n")), blocks


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_other_line_ends_and_a_byte_order_mark_give_the_same_output(trained_run: Path, tmp_path: Path,
                                                                    newline: str) -> None:
    """A bad value early, a blank line, the header quoted: ``\\r\\n``, ``\\r`` and a UTF-8 BOM
    give the output and errors of the ``\\n`` file."""
    lines = _lines(tmp_path / "in.csv", ROWS)
    lines[0] = ",".join(f'"{name}"' for name in lines[0].split(","))
    lines[1 + 3] = _not_a_number(lines[1 + 3])
    lines[1 + 4000] = ""
    _write(tmp_path / "unix.csv", lines)
    (tmp_path / "other.csv").write_bytes(b"\xef\xbb\xbf" + (newline.join(lines) + newline).encode())
    options = PredictOptions(id_columns=("id",), chunk_size=1000)
    for name in ("unix", "other"):
        report = predict_file(trained_run, tmp_path / f"{name}.csv", tmp_path / f"{name}_out.csv", options)
        assert (report.rows, report.predicted, report.failed) == (ROWS, ROWS - 2, 1)
    assert (tmp_path / "other_out.csv").read_bytes() == (tmp_path / "unix_out.csv").read_bytes()
    assert ((tmp_path / "other_out.csv.errors.jsonl").read_bytes()
            == (tmp_path / "unix_out.csv.errors.jsonl").read_bytes())
