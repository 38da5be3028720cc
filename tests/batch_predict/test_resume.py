"""A killed ``kiln predict`` (SIGKILL, a real subprocess) resumes with the same command and ends
with the output an uninterrupted run writes; a changed input or model is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from kiln.batch_predict import PredictOptions, predict_file
from kiln.errors import UsageError
from tests.batch_predict.conftest import digits_csv
from tests.conftest import run_cli

ROWS = 30_000
# Small chunks, each synced: the job takes seconds, so the kill lands part-way.
ARGS = ("--chunk-size", "100", "--batch-size", "25", "--threads", "1", "--backend", "torch", "--top-k", "2",
        "--id-column", "id")


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30,000 digit rows, two of them bad (the errors file is resumed too)."""
    path = tmp_path_factory.mktemp("predict-resume") / "in.csv"
    digits_csv(path, ROWS)
    lines = path.read_text().splitlines()
    lines[1 + 4321] = lines[1 + 4321].replace(",", ",x", 1)
    lines[1 + 25000] = ",".join(lines[1 + 25000].split(",")[:5])
    path.write_text("\n".join(lines) + "\n")
    return path


def _predict(run: Path, source: Path, output: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen([sys.executable, "-m", "kiln", "predict", str(run), "--input", str(source),
                             "--output", str(output), *ARGS], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_part_way(run: Path, source: Path, output: Path, chunks: int) -> None:
    """Start the job and SIGKILL it once ``chunks`` chunks are committed."""
    process = _predict(run, source, output)
    record = output.with_name(output.name + ".progress.json")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if json.loads(record.read_text())["chunks"] >= chunks:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    assert process.poll() is None, f"the job ended before the kill: {process.communicate()}"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)  # closes the pipes
    assert process.returncode == -signal.SIGKILL
    assert not output.exists()  # only the finish puts the output in place


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_sigkill_then_the_same_command_gives_the_uninterrupted_output(trained_run: Path, big_csv: Path,
                                                                      tmp_path: Path, suffix: str) -> None:
    reference = tmp_path / f"reference{suffix}"
    assert run_cli("predict", str(trained_run), "--input", str(big_csv), "--output", str(reference),
                   *ARGS).returncode == 1  # two bad rows
    output = tmp_path / f"out{suffix}"
    _kill_part_way(trained_run, big_csv, output, chunks=20)
    if suffix == ".csv":  # as if killed between a chunk's bytes and its record: bytes past the
        # commit, more of them than the rest of the output, so only a truncation removes them
        with open(output.with_name(output.name + ".partial"), "ab") as partial:
            partial.write(b"999,half a row" * 300_000)
    _kill_part_way(trained_run, big_csv, output, chunks=80)  # killed again, later
    finished = _predict(trained_run, big_csv, output)
    stdout, stderr = finished.communicate(timeout=300)
    assert finished.returncode == 1, stderr
    assert "resumed after" in stdout and "2 rows could not be predicted" in stderr
    if suffix == ".csv":
        assert output.read_bytes() == reference.read_bytes()
    else:
        assert pq.read_table(output).equals(pq.read_table(reference))
        rows = pq.read_table(output, columns=["row"]).column("row").to_numpy()
        assert np.array_equal(rows, np.setdiff1d(np.arange(ROWS), [4321, 25000]))  # each row once, in order
    errors = output.with_name(output.name + ".errors.jsonl")
    assert errors.read_bytes() == reference.with_name(reference.name + ".errors.jsonl").read_bytes()
    assert [json.loads(line)["row"] for line in errors.read_text().splitlines()] == [4321, 25000]
    leftovers = {p.name for p in tmp_path.iterdir()} - {reference.name, output.name, errors.name,
                                                         reference.name + ".errors.jsonl"}
    assert not leftovers


def _partial_job(run: Path, source: Path, output: Path) -> None:
    """A job stopped after its first chunks: --on-error fail stops at a bad row, after committing
    the chunks before it."""
    with pytest.raises(Exception, match="row 250"):
        predict_file(run, source, output, PredictOptions(chunk_size=100, on_error="fail", id_columns=("id",)))
    assert json.loads(output.with_name(output.name + ".progress.json").read_text())["chunks"] == 2


def test_a_changed_input_or_model_is_refused_and_overwrite_starts_over(trained_run: Path, digits_onnx_run: Path,
                                                                      tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    digits_csv(source, 400)
    lines = source.read_text().splitlines()
    lines[251] = lines[251].replace(",", ",x", 1)
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out.csv"
    _partial_job(trained_run, source, output)
    with pytest.raises(UsageError, match="the model changed since it was started"):
        predict_file(digits_onnx_run, source, output, PredictOptions(chunk_size=100, id_columns=("id",)))
    with pytest.raises(UsageError, match=r"the options changed since it was started \(top_k: 1 then, 2 now\)"):
        predict_file(trained_run, source, output, PredictOptions(chunk_size=100, id_columns=("id",), top_k=2))
    before = os.stat(source)
    source.write_text(source.read_text().replace("000399,", "000399x,").replace("000398,", "00039,"))
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime, other bytes
    assert os.stat(source).st_size == before.st_size
    with pytest.raises(UsageError, match="the input changed since it was started"):
        predict_file(trained_run, source, output, PredictOptions(chunk_size=100, id_columns=("id",)))
    done = run_cli("predict", str(trained_run), "--input", str(source), "--output", str(output), "--id-column",
                   "id", "--chunk-size", "100")
    assert done.returncode == 2 and "--overwrite" in done.stderr
    report = predict_file(trained_run, source, output,
                          PredictOptions(chunk_size=100, id_columns=("id",), overwrite=True))
    assert (report.resumed_chunks, report.rows, report.failed) == (0, 400, 1)


def test_a_finished_output_is_not_replaced_without_overwrite(trained_run: Path, tmp_path: Path) -> None:
    digits_csv(tmp_path / "in.csv", 10)
    predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv", PredictOptions(id_columns=("id",)))
    with pytest.raises(UsageError, match="already exists: run with --overwrite"):
        predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv", PredictOptions(id_columns=("id",)))


def test_a_kill_during_the_finish_is_completed_by_the_same_command(trained_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped after the output was renamed into place but before the errors file and the record
    were: the next run puts the rest in place instead of refusing or starting over."""
    import kiln.batch_predict.writers as writers

    source = tmp_path / "in.csv"
    digits_csv(source, 300)
    lines = source.read_text().splitlines()
    lines[11] = lines[11].replace(",", ",x", 1)
    source.write_text("\n".join(lines) + "\n")
    options = PredictOptions(chunk_size=100, id_columns=("id",))
    predict_file(trained_run, source, tmp_path / "reference.csv", options)
    real_replace, calls = os.replace, []

    def replace_then_die(a: object, b: object) -> None:
        calls.append(b)
        if str(b).endswith("out.csv"):
            real_replace(a, b)  # type: ignore[arg-type]
            raise KeyboardInterrupt  # as if killed right after the output's rename
        real_replace(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(writers.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        predict_file(trained_run, source, tmp_path / "out.csv", options)
    monkeypatch.setattr(writers.os, "replace", real_replace)
    assert (tmp_path / "out.csv").exists() and (tmp_path / "out.csv.progress.json").exists()
    report = predict_file(trained_run, source, tmp_path / "out.csv", options)
    assert report.failed == 1 and report.errors_file == tmp_path / "out.csv.errors.jsonl"
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "reference.csv").read_bytes()
    assert report.errors_file.read_bytes() == (tmp_path / "reference.csv.errors.jsonl").read_bytes()
    assert not (tmp_path / "out.csv.progress.json").exists()


def test_a_second_job_on_the_same_output_stops_at_once(trained_run: Path, tmp_path: Path) -> None:
    import fcntl

    digits_csv(tmp_path / "in.csv", 5)
    with open(tmp_path / "out.csv.lock", "w") as held:  # the first job, still running
        held.write("pid 12345")
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(UsageError, match=r"another kiln predict \(pid 12345\) is writing"):
            predict_file(trained_run, tmp_path / "in.csv", tmp_path / "out.csv", PredictOptions(id_columns=("id",)))
    assert not (tmp_path / "out.csv").exists()
