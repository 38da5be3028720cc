"""Bad rows go to OUTPUT.errors.jsonl with their row (or path) and reason, the rest are predicted;
a wrong input is exit 2 before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kiln.batch_predict import PredictOptions, predict_file
from kiln.errors import DataError, UsageError
from tests.batch_predict.conftest import cancer_table, digits_csv, digits_inputs
from tests.conftest import run_cli


def _errors(output: Path) -> list[dict[str, object]]:
    path = output.with_name(output.name + ".errors.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def _bad_csv(path: Path) -> None:
    """A 20-row digits CSV whose rows 2, 4, 6, 8, 10, 12 and 19 are bad, each in its own way."""
    digits_csv(path, 20)
    lines = path.read_text().splitlines()  # line = row + 2

    def cell(row: int, column: int, value: str) -> None:
        parts = lines[row + 1].split(",")
        parts[column] = value
        lines[row + 1] = ",".join(parts)

    cell(2, 5, "abc")
    lines[4 + 1] = ",".join(lines[4 + 1].split(",")[:10])  # too few values
    lines[6 + 1] += ",1,2"  # too many
    cell(8, 2, "")
    cell(10, 2, "nan")
    cell(12, 3, "-inf")
    cell(19, 64, "1e999")  # beyond float64: parsed as inf
    path.write_text("\n".join(lines) + "\n")


BAD_CSV_REASONS = {2: "feature 'p4' is not a number: 'abc'", 4: "line 6 has 10 values, the header has 65",
                   6: "line 8 has 67 values, the header has 65", 8: "feature 'p1' is missing",
                   10: "feature 'p1' is nan: NaN and infinity", 12: "feature 'p2' is -inf: NaN and infinity",
                   19: "feature 'p63' is inf"}


@pytest.mark.parametrize("chunk_size", [3, 10_000])  # bad rows at chunk edges, and in one chunk
def test_bad_csv_rows_are_listed_and_the_rest_predicted(trained_run: Path, tmp_path: Path, chunk_size: int) -> None:
    _bad_csv(tmp_path / "in.csv")
    report = predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv",
                          PredictOptions(id_columns=("id",), chunk_size=chunk_size))
    assert (report.rows, report.predicted, report.failed) == (20, 13, 7)
    errors = _errors(tmp_path / "out.csv")
    assert [e["row"] for e in errors] == sorted(BAD_CSV_REASONS)
    for error in errors:
        assert str(error["reason"]).startswith(BAD_CSV_REASONS[int(error["row"])]), error  # type: ignore[call-overload]
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert out["row"].tolist() == [r for r in range(20) if r not in BAD_CSV_REASONS]
    assert out["id"].tolist() == [f"{r:06d}" for r in out["row"]]


def test_the_cli_exits_1_and_names_the_errors_file(trained_run: Path, tmp_path: Path) -> None:
    _bad_csv(tmp_path / "in.csv")
    done = run_cli("predict", str(trained_run), "--input", str(tmp_path / "in.csv"), "--output",
                   str(tmp_path / "out.csv"), "--id-column", "id")
    assert done.returncode == 1, done.stderr
    assert "predicted 13 of 20 rows" in done.stdout
    assert f"7 rows could not be predicted; each is in {tmp_path / 'out.csv.errors.jsonl'}" in done.stderr
    failed = run_cli("predict", str(trained_run), "--input", str(tmp_path / "in.csv"), "--output",
                     str(tmp_path / "again.csv"), "--id-column", "id", "--on-error", "fail")
    assert failed.returncode == 1
    assert "in.csv, row 2: feature 'p4' is not a number: 'abc'" in failed.stderr
    assert "--on-error skip" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "again.csv").exists()


def test_bad_json_lines(trained_run: Path, tmp_path: Path) -> None:
    good = json.dumps(digits_inputs(1)[0].tolist())
    lines = [good, "", "{not json", '{"instances": [1]}', "[[1, 2], [3]]", '["a", "b"]', "[1, 2, 3]",
             json.dumps([1e300] * 64), "[" + ",".join(["NaN"] * 64) + "]", good]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    report = predict_file(trained_run, tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    assert (report.rows, report.predicted, report.failed) == (10, 2, 7)  # the blank line 2: skipped
    reasons = {e["row"]: str(e["reason"]) for e in _errors(tmp_path / "out.jsonl")}
    assert list(reasons) == [2, 3, 4, 5, 6, 7, 8]
    for row, text in {2: "not valid JSON", 3: "holds a JSON dict", 4: "ragged",
                      5: "other than numbers", 6: "has shape [3]", 7: "too large for float32",
                      8: "not valid JSON"}.items():
        assert text in reasons[row], (row, reasons[row])
    assert [json.loads(line)["row"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [0, 9]


def test_nan_and_inf_rows_of_an_array(trained_run: Path, tmp_path: Path) -> None:
    x = digits_inputs(6)
    x[1, 3], x[4, 0] = np.nan, np.inf
    np.save(tmp_path / "in.npy", x)
    report = predict_file(trained_run, tmp_path / "in.npy", tmp_path / "out.csv")
    assert report.failed == 2
    assert _errors(tmp_path / "out.csv") == [
        {"row": 1, "reason": "value 3 is nan: NaN and infinity cannot be predicted"},
        {"row": 4, "reason": "value 0 is inf: NaN and infinity cannot be predicted"}]


def test_unreadable_images_are_listed_by_path(image_run: Path, tmp_path: Path) -> None:
    from kiln.testing.images import write_digits_folder

    folder = write_digits_folder(tmp_path / "new", classes=2, per_class=2, size=20, formats=("png",))
    first = sorted(folder.rglob("*.png"))[0]
    first.write_bytes(first.read_bytes()[:60])  # truncated
    second = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    (second / "text.jpg").write_text("not a picture")
    report = predict_file(image_run, folder, tmp_path / "out.parquet")
    assert (report.rows, report.failed) == (5, 2)
    errors = _errors(tmp_path / "out.parquet")
    assert sorted(str(e["path"]) for e in errors) == sorted([first.relative_to(folder).as_posix(),
                                                                 f"{second.name}/text.jpg"])
    assert all("not a readable image" in str(e["reason"]) for e in errors)


def test_wrong_inputs_stop_before_any_work(trained_run: Path, cancer_run: Path, image_run: Path,
                                           tmp_path: Path) -> None:
    digits_csv(tmp_path / "digits.csv", 5)
    twice = (tmp_path / "digits.csv").read_text().replace(",p63\n", ",p0\n", 1)
    (tmp_path / "twice.csv").write_text(twice)  # p0 twice: pyarrow's KeyError traceback before
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["mean radius"] * 2),
                   tmp_path / "twice.parquet")
    (tmp_path / "data.txt").write_text("1,2,3\n")
    np.save(tmp_path / "wrong.npy", np.zeros((4, 63)))
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    cases = [
        (trained_run, "data.txt", "out.csv", "cannot tell how to read"),
        (trained_run, "digits.csv", "out.xlsx", "cannot tell the output format"),
        (trained_run, "digits.csv", "out.csv", "takes 64 values per row and records no feature names, but"),
        (cancer_run, "digits.csv", "out.csv", "lacks 30 of the model's 30 feature columns: 'mean radius'"),
        (cancer_run, "images", "out.csv", "is a folder of images, but the model takes [30] numbers"),
        (trained_run, "wrong.npy", "out.csv", "has shape [4, 63]; the model takes rows of shape [1, 8, 8]"),
        (trained_run, "missing.csv", "out.csv", "does not exist"),
        (trained_run, "digits.csv", "digits.csv", "is the input itself"),
        (trained_run, "twice.csv", "out.csv", "twice.csv has more than one column named 'p0'"),
        (cancer_run, "twice.parquet", "out.csv", "has more than one column named 'mean radius'"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for run, given, output, message in cases:
        with pytest.raises(UsageError, match=None) as caught:
            predict_file(run, tmp_path / given, tmp_path / output)
        assert message in str(caught.value), (given, str(caught.value))
        assert caught.value.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    done = run_cli("predict", str(cancer_run), "--input", str(tmp_path / "digits.csv"), "--output",
                   str(tmp_path / "out.csv"))
    assert done.returncode == 2 and "lacks 30 of the model's 30 feature columns" in done.stderr


def test_the_api_raises_on_a_bad_row_or_skips_it(cancer_run: Path) -> None:
    import kiln

    frame = cancer_table().head(5)
    frame.loc[3, "mean radius"] = np.nan
    with pytest.raises(DataError, match="row 3: feature 'mean radius' is missing"):
        kiln.predict(cancer_run, frame)
    assert kiln.predict(cancer_run, frame, on_error="skip")["row"].tolist() == [0, 1, 2, 4]
    twice = pd.concat([frame, frame[["mean radius"]]], axis=1)
    with pytest.raises(UsageError, match="the DataFrame has more than one column named 'mean radius'"):
        kiln.predict(cancer_run, twice)


def test_an_unverified_onnx_export_is_refused_as_by_serve(digits_onnx_run: Path, tmp_path: Path) -> None:
    """An .onnx file without a parity record (copied out of its run) is refused unless
    --allow-unverified; a run whose export failed parity is predicted with the eager model."""
    import shutil

    from kiln.errors import ServeError

    digits_csv(tmp_path / "in.csv", 5)
    run = Path(shutil.copytree(digits_onnx_run, tmp_path / "run"))
    (run / "models" / "exports.json").unlink()
    with pytest.raises(ServeError, match="parity"):
        predict_file(run / "models" / "model.onnx", tmp_path / "in.csv", tmp_path / "a.csv",
                     PredictOptions(id_columns=("id",)))
    allowed = predict_file(run / "models" / "model.onnx", tmp_path / "in.csv", tmp_path / "b.csv",
                           PredictOptions(id_columns=("id",), allow_unverified=True))
    assert allowed.backend == "onnx" and allowed.predicted == 5
    assert predict_file(run, tmp_path / "in.csv", tmp_path / "c.csv", PredictOptions(id_columns=("id",))).backend == "torch"


def test_blank_lines_are_skipped_and_keep_their_numbers(trained_run: Path, tmp_path: Path) -> None:
    """A trailing blank line (or a few, files joined with cat) is not a record: exit 0."""
    digits_csv(tmp_path / "in.csv", 6)
    lines = (tmp_path / "in.csv").read_text().splitlines()
    (tmp_path / "in.csv").write_text("\n".join([*lines[:3], "", *lines[3:]]) + "\n\n\n")
    report = predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv", PredictOptions(id_columns=("id",)))
    assert (report.predicted, report.failed) == (6, 0)
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert out["row"].tolist() == [0, 1, 3, 4, 5, 6]  # the blank line was row 2 (line 4)
    assert out["id"].tolist() == [f"{i:06d}" for i in range(6)]


def test_many_bad_rows_across_many_reader_blocks_keep_their_numbers(
        trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of about eight lines: malformed lines are reported a block ahead of the rows read,
    and chunks of 25 rows cut across blocks; every row keeps its number and every bad one is listed once."""
    from kiln.batch_predict import tables

    monkeypatch.setattr(tables, "BLOCK_BYTES", 2048)
    digits_csv(tmp_path / "in.csv", 300)
    lines = (tmp_path / "in.csv").read_text().splitlines()
    short = {r for r in range(300) if r % 7 == 3 or 120 <= r < 160}  # a run of 40 bad lines too
    text = {r for r in range(300) if r % 11 == 5} - short
    for row in short:
        lines[row + 1] = ",".join(lines[row + 1].split(",")[:9])
    for row in text:
        parts = lines[row + 1].split(",")
        parts[3] = "x"
        lines[row + 1] = ",".join(parts)
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    report = predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv",
                          PredictOptions(id_columns=("id",), chunk_size=25))
    assert (report.rows, report.failed) == (300, len(short | text))
    errors = _errors(tmp_path / "out.csv")
    assert [e["row"] for e in errors] == sorted(short | text)
    assert all(str(e["reason"]).startswith("line ") == (e["row"] in short) for e in errors)
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert out["row"].tolist() == [r for r in range(300) if r not in short | text]
    assert out["id"].tolist() == [f"{r:06d}" for r in out["row"]]


def _unclosed_quote_csv(path: Path, where: str, row: int = 50, newline: str = "\n") -> None:
    """A 200-row digits CSV whose ``row`` (line ``row + 2``) opens a quote that is never closed."""
    frame = digits_csv(path, 200)
    if where == "id":  # the last column, passed through as text: the fast read takes it whole
        frame.insert(64, "id", frame.pop("id"))
        frame.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    if where == "extra":
        lines[row + 1] += ',"oops'  # one value too many: a malformed line, to the end of the file
    else:
        parts = lines[row + 1].split(",")
        parts[-1] = '"' + parts[-1]  # the last value: the line's count of values stays right
        lines[row + 1] = ",".join(parts)
    path.write_bytes((newline.join(lines) + newline).encode())


@pytest.mark.parametrize(("where", "row", "newline"), [
    ("extra", 50, "\n"), ("feature", 50, "\n"), ("id", 50, "\n"),
    ("extra", 0, "\n"),  # the rest of the file one malformed row: no batch comes after it
    ("extra", 50, "\r"), ("id", 50, "\r"),  # lines ended by CR alone (old Mac exports), as pyarrow reads them
    ("feature", 50, "\r\n"),
])
def test_an_unclosed_quote_stops_the_job_instead_of_losing_the_lines_after_it(
        trained_run: Path, tmp_path: Path, where: str, row: int, newline: str) -> None:
    """pyarrow takes every line after an open quote into one value; read on, those rows would be
    missing from both the output and the errors file."""
    _unclosed_quote_csv(tmp_path / "in.csv", where, row, newline)
    with pytest.raises(DataError) as raised:
        predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv",
                     PredictOptions(id_columns=("id",), chunk_size=10))
    assert f"{tmp_path / 'in.csv'}, line {row + 2}: a value runs over {200 - row} lines" in str(raised.value)
    assert "close or remove the quote" in str(raised.value)
    assert "\r" not in str(raised.value)


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_other_line_ends_are_rows_like_any_other(trained_run: Path, tmp_path: Path, newline: str) -> None:
    """CRLF and CR files: a malformed line is one bad row, not a value over lines."""
    digits_csv(tmp_path / "in.csv", 20)
    lines = (tmp_path / "in.csv").read_text().splitlines()
    lines[6] = ",".join(lines[6].split(",")[:10])  # row 5: too few values
    (tmp_path / "in.csv").write_bytes((newline.join(lines) + newline).encode())
    report = predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv", PredictOptions(id_columns=("id",)))
    assert (report.rows, report.failed) == (20, 1)
    assert [(e["row"], e["reason"]) for e in _errors(tmp_path / "out.csv")] == [
        (5, "line 7 has 10 values, the header has 65")]


def test_the_cli_names_the_line_of_an_unclosed_quote(trained_run: Path, tmp_path: Path) -> None:
    _unclosed_quote_csv(tmp_path / "in.csv", "feature")
    done = run_cli("predict", str(trained_run), "--input", str(tmp_path / "in.csv"), "--output",
                   str(tmp_path / "out.csv"), "--id-column", "id")
    assert done.returncode == 1, done.stderr
    assert "in.csv, line 52: a value runs over 150 lines" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_input_without_rows_gives_an_output_with_its_columns(trained_run: Path, tmp_path: Path, suffix: str) -> None:
    digits_csv(tmp_path / "in.csv", 1)
    header = (tmp_path / "in.csv").read_text().splitlines()[0]
    (tmp_path / "in.csv").write_text(header + "\n")
    report = predict_file(trained_run, tmp_path / "in.csv", tmp_path / f"out{suffix}", PredictOptions(id_columns=("id",)))
    assert (report.rows, report.predicted, report.failed) == (0, 0, 0)
    frame = pd.read_csv(tmp_path / "out.csv") if suffix == ".csv" else pd.read_parquet(tmp_path / "out.parquet")
    assert list(frame.columns) == ["row", "id", "class", "class_name", "probability"] and frame.empty


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_chunk_of_bad_rows_only_is_listed_and_the_job_goes_on(trained_run: Path, tmp_path: Path, suffix: str) -> None:
    """The first chunk (rows 0-2) has no row the model can take: it adds errors and no output
    rows (the model is never called on an empty batch), and the later chunks are predicted."""
    digits_csv(tmp_path / "in.csv", 9)
    lines = (tmp_path / "in.csv").read_text().splitlines()
    for row in range(3):
        parts = lines[row + 1].split(",")
        parts[5] = "abc"
        lines[row + 1] = ",".join(parts)
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    output = tmp_path / f"out{suffix}"
    report = predict_file(trained_run, tmp_path / "in.csv", output, PredictOptions(id_columns=("id",), chunk_size=3))
    assert (report.rows, report.predicted, report.failed) == (9, 6, 3)
    assert [e["row"] for e in _errors(output)] == [0, 1, 2]
    table = pd.read_csv(output, dtype={"id": str}) if suffix == ".csv" else pd.read_parquet(output)
    assert table["row"].tolist() == [3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_chunk_without_a_row_to_predict_is_committed_and_the_job_goes_on(trained_run: Path, tmp_path: Path,
                                                                           suffix: str) -> None:
    """Chunks (of 3 rows) whose lines are all malformed (rows 3-5) or all blank (rows 9-11, the
    file's end, as from files joined with cat): no model call, the errors listed, exit 0 for the
    blank ones. The model's input is [1, 8, 8], not flat."""
    frame = digits_csv(tmp_path / "in.csv", 9)
    if suffix == ".csv":
        lines = (tmp_path / "in.csv").read_text().splitlines()
        for row in (3, 4, 5):
            lines[row + 1] = ",".join(lines[row + 1].split(",")[:7])
        (tmp_path / "in.csv").write_text("\n".join(lines) + "\n" + "\n" * 3)
        reason = "line 5 has 7 values, the header has 65"
    else:
        rows = [json.dumps(r) for r in frame.drop(columns="id").to_numpy().tolist()]
        rows[3:6] = ["[1, 2]"] * 3
        (tmp_path / "in.jsonl").write_text("\n".join(rows) + "\n" + "\n" * 3)
        reason = "has shape [2]"
    output = tmp_path / "out.csv"
    options = PredictOptions(id_columns=("id",) if suffix == ".csv" else (), chunk_size=3)
    report = predict_file(trained_run, tmp_path / f"in{suffix}", output, options)
    assert (report.rows, report.predicted, report.failed) == (12, 6, 3)
    errors = _errors(output)
    assert [e["row"] for e in errors] == [3, 4, 5] and reason in str(errors[0]["reason"])
    assert pd.read_csv(output)["row"].tolist() == [0, 1, 2, 6, 7, 8]


def test_the_progress_position_never_goes_back_when_the_careful_read_starts_over(
        trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value in chunk 6 of 10 sends the read back to the file's start: the bytes read (the
    bar's position) stand still until the careful read passes them, then reach the file's size."""
    from kiln.batch_predict import tables
    from kiln.batch_predict.model import load_for_prediction

    monkeypatch.setattr(tables, "BLOCK_BYTES", 4096)
    digits_csv(tmp_path / "in.csv", 200)
    lines = (tmp_path / "in.csv").read_text().splitlines()
    lines[121] = lines[121].rsplit(",", 1)[0] + ",x"  # row 120: p63 is not a number
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    loaded = load_for_prediction(trained_run, None, 64)
    source = tables.TableSource(tmp_path / "in.csv", loaded.pre, None, ("id",))
    seen: list[int] = []  # the position at every read from the file, as the bar's thread may see it
    read = tables.CountingFile.readinto

    def readinto(self: tables.CountingFile, buffer: Any) -> int:
        count = read(self, buffer)
        seen.append(source.read_bytes)
        return count

    monkeypatch.setattr(tables.CountingFile, "readinto", readinto)
    chunks = list(source.chunks(20, 0))
    assert len(chunks) == 10 and chunks[6] is not None and [e["row"] for e in chunks[6].errors] == [120]
    assert seen == sorted(seen) and seen[-1] == source.total_bytes, seen


def test_a_value_that_is_not_utf8_stops_the_job_naming_its_line_and_the_fix(trained_run: Path, tmp_path: Path) -> None:
    digits_csv(tmp_path / "in.csv", 50)
    data = (tmp_path / "in.csv").read_bytes().replace(b"\n000030,", b"\n00003\xe9,", 1)  # Latin-1: é
    (tmp_path / "in.csv").write_bytes(data)
    with pytest.raises(DataError) as raised:
        predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv", PredictOptions(id_columns=("id",)))
    assert f"{tmp_path / 'in.csv'}, line 32: a value is not UTF-8 text" in str(raised.value)
    assert "save it as UTF-8" in str(raised.value)


def test_an_unclosed_quote_across_the_readers_block_edge_is_named_too(
        trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past a block (1 MiB; 4 kB here) pyarrow stops "out of sync with chunker" and suggests an
    option kiln does not offer: the error says what it means instead."""
    from kiln.batch_predict import tables

    monkeypatch.setattr(tables, "BLOCK_BYTES", 4096)
    _unclosed_quote_csv(tmp_path / "in.csv", "extra")
    with pytest.raises(DataError) as raised:
        predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv", PredictOptions(id_columns=("id",)))
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'in.csv'}: a value runs over lines (a quote that is never closed?)")
    assert "close or remove it" in message and "newlines_in_values" not in message
