"""Monitoring against real ``kiln serve`` processes: live accuracy from feedback with two workers,
bad feedback answered 4xx, and a log that keeps every committed prediction through a worker's
SIGKILL and a restart, and commits on SIGTERM what was still queued.

One run directory for the module (its ONNX export is made once, by the first server); each
server gets its own --state-dir, so their logs stay apart.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kiln.cli.main import main
from tests.serve.conftest import Server, running
from tests.serve.helpers import digits_inputs, metric_samples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("monitored") / trained_run.name
    shutil.copytree(trained_run, copy)
    return copy


@pytest.fixture(scope="module")
def two_workers(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("two-workers")
    with running(run, root / "server.log", "--workers", "2", "--state-dir", str(root / "state")) as server:
        yield server, root / "state" / "monitor.db"


def _predict(server: Server, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` requests of one instance each, on fresh connections (either worker may answer);
    their (request id, predicted class name)."""
    answers = []
    for i in range(n):
        with httpx.Client() as client:
            response = client.post(f"{server.url}/predict", json={"instances": digits_inputs(1, seed + i).tolist()})
        assert response.status_code == 200, response.text
        answers.append((response.json()["request_id"], response.json()["class_names"][0]))
    return answers


def _logged(db: Path) -> set[str]:
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as connection:
        return {r for (r,) in connection.execute("SELECT request_id FROM predictions")}


def _wait_logged(db: Path, ids: set[str]) -> None:
    """Until the writers have committed every id (they do within milliseconds)."""
    deadline = time.monotonic() + 30
    while not ids <= _logged(db):
        assert time.monotonic() < deadline, f"never logged: {sorted(ids - _logged(db))}"
        time.sleep(0.05)


def _post(server: Server, body: object) -> httpx.Response:
    with httpx.Client() as client:  # a fresh connection: either worker answers
        return client.post(f"{server.url}/feedback", json=body)


def test_live_accuracy_from_feedback_is_right_across_two_workers(two_workers: tuple[Server, Path]) -> None:
    server, db = two_workers
    answers = _predict(server, 12)
    _wait_logged(db, {rid for rid, _ in answers})
    other = {"0": "1"}
    labels = [(rid, name if i % 3 else other.get(name, "0")) for i, (rid, name) in enumerate(answers)]
    for rid, label in labels:
        response = _post(server, {"request_id": rid, "label": label})
        assert response.status_code == 200, response.text
    truth = {(rid, label == name) for (rid, label), (_, name) in zip(labels, answers, strict=True)}
    correct = sum(right for _, right in truth)
    recall: dict[str, list[bool]] = {}
    for (_, label), (_, name) in zip(labels, answers, strict=True):
        recall.setdefault(label, []).append(label == name)

    again = _post(server, {"feedback": [{"request_id": r, "label": lab} for r, lab in labels]})
    assert again.json() == {"accepted": 0, "duplicates": 12, "correct": 0}  # counted once

    for _ in range(8):  # each scrape on a fresh connection: whichever worker answers agrees
        with httpx.Client() as client:
            samples = metric_samples(client.get(f"{server.url}/metrics").text)
        assert samples[("kiln_model_accuracy", ())] == pytest.approx(correct / 12)
        assert samples[("kiln_model_accuracy_samples", ())] == 12
        assert samples[("kiln_feedback_total", (("outcome", "correct"),))] == correct
        assert samples[("kiln_feedback_total", (("outcome", "wrong"),))] == 12 - correct
        got = {dict(labels_)["class"]: v for (name, labels_), v in samples.items() if name == "kiln_class_recall"}
        assert got == pytest.approx({c: sum(hits) / len(hits) for c, hits in recall.items()})


def test_bad_feedback_is_4xx_naming_the_problem(two_workers: tuple[Server, Path]) -> None:
    server, db = two_workers
    ((rid, name),) = _predict(server, 1, seed=100)
    _wait_logged(db, {rid})
    with httpx.Client() as client:
        raw = client.post(f"{server.url}/feedback", content=b"{nope", headers={"content-type": "application/json"})
    assert (raw.status_code, "not valid JSON" in raw.text) == (400, True)
    wrong = "1" if name == "0" else "0"
    cases = [
        ({"request_id": "0123456789abcdef", "label": name}, 404, "no logged prediction has request id"),
        ({"request_id": rid, "label": "eleven"}, 422, "unknown label 'eleven'"),
        ({"request_id": rid, "label": 10}, 422, "label index 10 is out of range"),
        ({"feedback": "all"}, 422, "a batch is"),
        ([1, 2], 422, "each feedback is an object"),
    ]
    for body, status, message in cases:
        response = _post(server, body)
        assert (response.status_code, message in response.json()["error"]) == (status, True), response.text
    assert _post(server, {"request_id": rid, "label": name}).status_code == 200
    conflict = _post(server, {"request_id": rid, "label": wrong})
    assert (conflict.status_code, "already has the label" in conflict.text) == (409, True)


def _workers(server: Server) -> list[int]:
    """The pids of the server's worker processes (uvicorn spawns them)."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]


def test_the_log_keeps_committed_predictions_through_sigkill_sigterm_and_restart(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    db = state / "monitor.db"
    with running(run, tmp_path / "first.log", "--workers", "2", "--state-dir", str(state)) as server:
        committed = {rid for rid, _ in _predict(server, 10)}
        _wait_logged(db, committed)  # committed: the writers' transactions hold them
        os.kill(_workers(server)[0], signal.SIGKILL)
        # uvicorn's supervisor replaces the dead worker; the other one serves meanwhile
        late = {rid for rid, _ in _predict(server, 5, seed=50)}
        _wait_logged(db, late)
        # Answered but not yet committed: the test holds the write lock, so the writers wait.
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        queued = {rid for rid, _ in _predict(server, 3, seed=70)}
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1)  # the server is shutting down, its writers still blocked
        lock.execute("ROLLBACK")
        lock.close()
        assert server.stop() == 0, server.output()  # it waited for its writers to commit
    late |= queued
    assert committed | late <= _logged(db)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with running(run, tmp_path / "second.log", "--state-dir", str(state)) as server:
        assert server.process.poll() is None
        assert committed | late <= _logged(db)  # the restart kept the old rows
        (rid, _), = _predict(server, 1, seed=99)
        metadata = httpx.get(f"{server.url}/metadata").json()
        assert metadata["prediction_log"] == str(db)
    assert _logged(db) == committed | late | {rid}

    output = tmp_path / "log.csv"
    assert main(["monitor", "export", str(state), "--output", str(output)]) == 0
    assert f"wrote 19 predictions to {output}" in capsys.readouterr().out
    header = output.read_text().splitlines()[0]
    assert '"channel_mean_0","channel_std_0"' in header and "input" not in header  # digits: 1 channel


def test_no_prediction_log_writes_nothing_and_feedback_says_why(run: Path, tmp_path: Path) -> None:
    shutil.rmtree(run / "serve_state", ignore_errors=True)
    with running(run, tmp_path / "server.log", "--no-prediction-log") as server:
        _predict(server, 1)
        response = _post(server, {"request_id": "x", "label": "0"})
        assert (response.status_code, "--no-prediction-log" in response.text) == (409, True)
        assert httpx.get(f"{server.url}/metadata").json()["prediction_log"] is None
        assert "kiln_model_accuracy" not in httpx.get(f"{server.url}/metrics").text
    assert not (run / "serve_state").exists()
