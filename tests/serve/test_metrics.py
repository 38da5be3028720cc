"""/metrics, parsed with prometheus_client's own parser, moves by exactly what was sent."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from kiln.errors import ServeError
from kiln.serve.metrics import ServeMetrics
from kiln.settings import PROMETHEUS_MULTIPROC_DIR
from tests.serve.conftest import Server, running
from tests.serve.helpers import digits_inputs, expected_probabilities, metric_samples


def _scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return metric_samples(response.text)


def _requests(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], status: str) -> float:
    return samples.get(("kiln_requests_total", (("endpoint", "/predict"), ("status", status))), 0.0)


def test_counters_move_by_the_right_amounts(onnx_server: Server) -> None:
    before = _scrape(onnx_server)
    classes: list[str] = []
    for seed in range(3):
        response = httpx.post(f"{onnx_server.url}/predict", json={"instances": digits_inputs(2, seed).tolist()})
        classes += response.json()["class_names"]
    httpx.post(f"{onnx_server.url}/predict", json={"instances": []})  # 422
    httpx.get(f"{onnx_server.url}/no-such-path")  # 404, counted as endpoint "other"
    after = _scrape(onnx_server)

    assert _requests(after, "200") - _requests(before, "200") == 3
    assert _requests(after, "422") - _requests(before, "422") == 1
    other = ("kiln_requests_total", (("endpoint", "other"), ("status", "404")))
    assert after[other] - before.get(other, 0.0) == 1
    for name in set(classes):
        key = ("kiln_predictions_total", (("class", name),))
        assert after[key] - before.get(key, 0.0) == classes.count(name)
    assert after[("kiln_batch_size_count", ())] - before[("kiln_batch_size_count", ())] == 3
    assert after[("kiln_batch_size_sum", ())] - before[("kiln_batch_size_sum", ())] == 6
    duration = ("kiln_request_duration_seconds_count", (("endpoint", "/predict"),))
    assert after[duration] - before.get(duration, 0.0) == 4  # before: maybe no /predict yet
    assert after[("kiln_requests_in_progress", ())] == 1  # the scrape itself
    info = [k for k in after if k[0] == "kiln_model_info"]
    assert len(info) == 1 and dict(info[0][1])["backend"] == "onnx" and after[info[0]] == 1


GATHER = 8


@pytest.fixture(scope="module")
def gathering_server(served_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Micro-batching that waits (up to 10 minutes) until a batch holds --max-batch rows: which
    requests share a model call then depends on how many were sent, not on when they arrived."""
    log = tmp_path_factory.mktemp("logs") / "gathering.log"
    with running(served_run, log, "--backend", "torch", "--batch-wait-ms", "600000",
                 "--max-batch", str(GATHER)) as server:
        yield server


def test_micro_batching_answers_concurrent_requests_from_one_model_call(
        gathering_server: Server, served_run: Path) -> None:
    """--max-batch single-row requests at once: one model call of that many rows, and each
    request gets the answer for its own row."""
    raw = digits_inputs(GATHER, seed=11)
    before = _scrape(gathering_server)
    with concurrent.futures.ThreadPoolExecutor(GATHER) as pool:
        futures = [pool.submit(httpx.post, f"{gathering_server.url}/predict",
                               json={"instances": raw[i:i + 1].tolist()}, timeout=120)
                   for i in range(GATHER)]
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * GATHER
    np.testing.assert_allclose([r.json()["probabilities"][0] for r in responses],
                               expected_probabilities(served_run, raw), rtol=0, atol=1e-6)
    after = _scrape(gathering_server)
    moved = {key: after[key] - before.get(key, 0.0) for key in after if key[0].startswith("kiln_batch_size")}
    assert moved[("kiln_batch_size_count", ())] == 1
    assert moved[("kiln_batch_size_sum", ())] == GATHER
    assert moved[("kiln_batch_size_bucket", (("le", str(float(GATHER // 2))),))] == 0
    assert moved[("kiln_batch_size_bucket", (("le", str(float(GATHER))),))] == 1


def test_multiprocess_metrics_need_the_directory_before_prometheus_client_loads(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without it the app's metrics would stay in memory and /metrics would silently omit them."""
    monkeypatch.delenv(PROMETHEUS_MULTIPROC_DIR, raising=False)
    with pytest.raises(ServeError, match="set to an existing directory, got ''"):
        ServeMetrics(8, multiprocess=True)
    monkeypatch.setenv(PROMETHEUS_MULTIPROC_DIR, str(tmp_path))  # too late: already imported
    with pytest.raises(ServeError, match="set after prometheus_client was imported"):
        ServeMetrics(8, multiprocess=True)
