"""``kiln serve --workers 2``: every scrape of /metrics shows the sum over both workers, and the
private metrics directory lives exactly as long as the server."""

from __future__ import annotations

import os
import signal
import stat
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from kiln.errors import ServeError
from kiln.serve.workers import metrics_directory
from kiln.settings import PROMETHEUS_MULTIPROC_DIR
from tests.serve.conftest import Server, running, start_server
from tests.serve.helpers import digits_inputs, metric_samples

PREDICT_200 = ("kiln_requests_total", (("endpoint", "/predict"), ("status", "200")))


def _scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    return metric_samples(response.text)


def _predictions_by_worker(directory: Path) -> dict[str, float]:
    """The /predict 200s each worker counted, read from its own file (``counter_<pid>.db``)."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        samples = [s for m in MultiProcessCollector.merge([str(path)]) for s in m.samples
                   if s.name == PREDICT_200[0] and s.labels == dict(PREDICT_200[1])]
        counts[path.stem.split("_")[1]] = sum(s.value for s in samples)
    return counts


@pytest.mark.slow
def test_metrics_sum_over_workers_and_their_directory_goes(
        served_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROMETHEUS_MULTIPROC_DIR, raising=False)
    tmp = tmp_path / "tmp"  # where the server's tempfile puts the metrics directory
    tmp.mkdir()
    with running(served_run, tmp_path / "server.log", "--workers", "2", env={"TMPDIR": str(tmp)}) as server:
        (directory,) = tmp.glob("kiln-metrics-*")
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        before = _scrape(server)
        classes: Counter[str] = Counter()
        sent = 0
        # Fresh connections until both workers have answered some (the second may still be
        # starting when the first reports ready); the kernel picks the worker per connection.
        while sent < 12 or sum(n > 0 for n in _predictions_by_worker(directory).values()) < 2:
            assert sent < 300, f"one worker answered everything: {_predictions_by_worker(directory)}"
            with httpx.Client() as client:
                response = client.post(f"{server.url}/predict",
                                       json={"instances": digits_inputs(2, sent).tolist()})
            assert response.status_code == 200
            classes.update(response.json()["class_names"])
            sent += 1
        # A worker counts a request just after its response has left, so the other worker can
        # answer a scrape a moment before that count lands; wait for the workers' own files.
        deadline = time.monotonic() + 10
        while sum(_predictions_by_worker(directory).values()) < sent and time.monotonic() < deadline:
            time.sleep(0.01)

        for _ in range(6):  # each scrape is answered by either worker, on a fresh connection
            after = _scrape(server)
            assert after[PREDICT_200] - before.get(PREDICT_200, 0.0) == sent
            predicted = {dict(labels)["class"]: value - before.get((name, labels), 0.0)
                         for (name, labels), value in after.items() if name == "kiln_predictions_total"}
            assert sum(predicted.values()) == 2 * sent
            assert {name: n for name, n in predicted.items() if n} == classes
            assert after[("kiln_batch_size_sum", ())] - before.get(("kiln_batch_size_sum", ()), 0.0) == 2 * sent
            assert after[("kiln_requests_in_progress", ())] == 1  # the scrape itself, summed live
            info = [key for key in after if key[0] == "kiln_model_info"]
            assert len(info) == 1 and after[info[0]] == 1  # one series, no pid label

        # A worker that dies: the supervisor replaces it and drops its live gauge from the sum
        # (mark_process_dead); what it counted stays, as counters must never go down.
        pid = int(next(directory.glob("gauge_livesum_*.db")).stem.split("_")[2])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (directory / f"gauge_livesum_{pid}.db").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (directory / f"gauge_livesum_{pid}.db").exists()
        assert (directory / f"counter_{pid}.db").exists()
        assert _scrape(server)[PREDICT_200] - before.get(PREDICT_200, 0.0) == sent

        code = server.stop()
    assert code == 0, server.output()
    assert not directory.exists()
    assert list(tmp.glob("kiln-metrics-*")) == []


def test_a_private_directory_is_set_while_in_use_then_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROMETHEUS_MULTIPROC_DIR, raising=False)
    with pytest.raises(RuntimeError, match="a worker failed"), metrics_directory() as directory:
        assert directory.is_dir() and os.environ[PROMETHEUS_MULTIPROC_DIR] == str(directory)
        (directory / "counter_1.db").write_bytes(b"")
        raise RuntimeError("a worker failed")
    assert not directory.exists()
    assert PROMETHEUS_MULTIPROC_DIR not in os.environ


def test_the_operators_directory_is_used_and_kept(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(PROMETHEUS_MULTIPROC_DIR, str(tmp_path))
    (tmp_path / "counter_1.db").write_bytes(b"")  # left by an earlier server
    with metrics_directory() as directory:
        assert directory == tmp_path
    assert "already holds 1 metrics files" in caplog.text
    assert (tmp_path / "counter_1.db").exists()
    assert os.environ[PROMETHEUS_MULTIPROC_DIR] == str(tmp_path)


@pytest.mark.parametrize("value", ["", "missing"])
def test_an_operators_directory_that_is_not_one_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    monkeypatch.setenv(PROMETHEUS_MULTIPROC_DIR, value and str(tmp_path / value))
    with pytest.raises(ServeError, match="is not a directory: create it"), metrics_directory():
        pass


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_exits_130_with_one_worker_or_several(served_run: Path, tmp_path: Path, workers: str) -> None:
    server = start_server(served_run, tmp_path / "server.log", "--workers", workers)
    try:
        code = server.stop(sig=signal.SIGINT)
    finally:
        server.stop()
    assert code == 130, server.output()
