"""The monitoring assets against real processes: a real ``kiln serve``, and a real Prometheus
(Debian's package, on loopback, scraping every second) that loads the rules ``kiln monitor
assets`` writes.

The test posts predictions and feedback with known labels, then reads ``kiln_model_accuracy``
back through Prometheus's query API; checks that every rule loaded and evaluates (the accuracy
alert, set above the live accuracy, goes pending); and that every metric the dashboard queries is
one the server exports, and every dashboard query returns data through Prometheus. Every wait
polls against a deadline.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from kiln.cli.main import main
from kiln.monitor.assets import DASHBOARD_FILE, RULES_FILE
from kiln.monitor.assets_dashboard import queries
from tests.conftest import require_tool
from tests.serve.conftest import Server, running
from tests.serve.helpers import digits_inputs, metric_samples

pytestmark = pytest.mark.slow

PROMETHEUS = shutil.which("prometheus")
DEADLINE = 90  # seconds any one wait may take (2 busy cores; Prometheus scrapes every second)
ALERTS = {"KilnAccuracyBelowGate", "KilnInputDrift", "KilnPredictionDrift", "KilnHighErrorRate",
          "KilnHighLatencyP99"}
DRIFT_BATCH = 120  # instances in one request: over the 100 the drift gauges wait for
T = TypeVar("T")


@dataclass
class Traffic:
    labelled: int  # predictions given feedback
    correct: int  # of them, predicted right


@pytest.fixture(scope="module")
def server(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("scraped")
    run = root / trained_run.name
    shutil.copytree(trained_run, run)
    with running(run, root / "server.log", "--state-dir", str(root / "state")) as served:
        yield served


@pytest.fixture(scope="module")
def assets(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CLI's files, with an accuracy bound above what the traffic below reaches and few
    labels needed, so the accuracy alert must go pending."""
    output = tmp_path_factory.mktemp("assets")
    code = main(["monitor", "assets", "--output", str(output), "--accuracy-threshold", "0.99",
                 "--min-samples", "5"])
    assert code == 0
    return output


@pytest.fixture(scope="module")
def prometheus(server: Server, assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_tool(PROMETHEUS is not None, "prometheus (Debian's prometheus package; .ci/run installs it)")
    assert PROMETHEUS is not None
    root = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(assets / RULES_FILE)],
        "scrape_configs": [{"job_name": "kiln", "static_configs": [
            {"targets": [server.url.removeprefix("http://")]}]}],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    with _prometheus(PROMETHEUS, root) as url:
        yield url


@contextlib.contextmanager
def _prometheus(binary: str, root: Path) -> Iterator[str]:
    """Prometheus on a free loopback port, ready; stopped with SIGTERM. Prometheus binds the
    port itself, so one taken in between is retried on another."""
    for attempt in range(3):
        port = _free_port()
        log = root / f"prometheus-{attempt}.log"
        with log.open("w") as handle:
            process = subprocess.Popen(
                [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"], stdout=handle, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"

        def started(process: subprocess.Popen[bytes] = process, url: str = url) -> bool:
            return process.poll() is not None or _ready(url)  # up, or gone (the port was taken)

        try:
            _until(started, "Prometheus to start", log)
            if process.poll() is None:
                yield url
                return
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if "address already in use" not in log.read_text():
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log.read_text()}")
    raise RuntimeError("prometheus found no free port in 3 tries")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    return False


def _until(check: Callable[[], T], what: str, log: Path | None = None) -> T:
    """Poll ``check`` until it returns something true; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + DEADLINE
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {DEADLINE}s"
                                 + (f":\n{log.read_text()}" if log is not None else ""))
        time.sleep(0.25)
    return found


@pytest.fixture(scope="module")
def traffic(server: Server, prometheus: str) -> Traffic:
    """Posted while Prometheus scrapes: one batch that fills the drift window, twelve single
    predictions, and feedback on those twelve with known labels, a third of them wrong."""
    with httpx.Client(timeout=30) as client:
        batch = client.post(f"{server.url}/predict", json={"instances": digits_inputs(DRIFT_BATCH, 7).tolist()})
        assert batch.status_code == 200, batch.text
        answers = []
        for i in range(12):
            answer = client.post(f"{server.url}/predict", json={"instances": digits_inputs(1, i).tolist()})
            assert answer.status_code == 200, answer.text
            answers.append((answer.json()["request_id"], answer.json()["class_names"][0]))
        labels = [(rid, predicted if i % 3 else ("1" if predicted == "0" else "0"))
                  for i, (rid, predicted) in enumerate(answers)]

        def accepted() -> bool:  # a prediction can be answered a moment before it is logged
            body = {"feedback": [{"request_id": rid, "label": label} for rid, label in labels]}
            return client.post(f"{server.url}/feedback", json=body).status_code == 200

        _until(accepted, "the feedback to be accepted (predictions logged)")
    correct = sum(label == predicted for (_, label), (_, predicted) in zip(labels, answers, strict=True))
    assert correct == 8
    return Traffic(len(labels), correct)


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_reads_back_the_accuracy_the_labels_make(prometheus: str, traffic: Traffic) -> None:
    expected = traffic.correct / traffic.labelled

    def scraped() -> dict[str, float] | None:
        found = {r["metric"]["__name__"]: float(r["value"][1])
                 for r in _query(prometheus, '{__name__=~"kiln_model_accuracy.*", job="kiln"}')}
        return found if found.get("kiln_model_accuracy_samples") == traffic.labelled else None

    values = _until(scraped, "Prometheus to scrape the accuracy of all the feedback")
    assert values["kiln_model_accuracy"] == pytest.approx(expected, abs=1e-12)
    outcomes = {r["metric"]["outcome"]: float(r["value"][1]) for r in _query(prometheus, "kiln_feedback_total")}
    assert outcomes == {"correct": traffic.correct, "wrong": traffic.labelled - traffic.correct}


def test_the_generated_rules_load_evaluate_and_the_accuracy_alert_goes_pending(
        prometheus: str, traffic: Traffic) -> None:
    def rules() -> dict[str, dict[str, Any]]:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return {rule["name"]: rule for group in groups for rule in group["rules"]}

    def pending() -> dict[str, dict[str, Any]] | None:
        found = rules()
        return found if found.get("KilnAccuracyBelowGate", {}).get("state") == "pending" else None

    seen = _until(pending, "the accuracy alert to go pending (bound 0.99, live 8/12, for: 15m)")
    assert set(seen) == ALERTS
    # one more evaluation of every rule, all after the feedback: each must have evaluated cleanly
    def again() -> dict[str, dict[str, Any]] | None:
        now = rules()
        return now if all(now[n]["lastEvaluation"] != seen[n]["lastEvaluation"] for n in ALERTS) else None

    evaluated = _until(again, "a further evaluation of every rule")
    assert [(r["name"], r["health"], r.get("lastError", "")) for r in evaluated.values() if r["health"] != "ok"] == []

    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    (alert,) = [a for a in alerts if a["labels"]["alertname"] == "KilnAccuracyBelowGate"]
    assert alert["state"] == "pending" and alert["labels"]["severity"] == "critical"
    assert float(alert["value"]) == pytest.approx(traffic.correct / traffic.labelled)
    assert "Live accuracy 66.67% on 127.0.0.1:" in alert["annotations"]["summary"]


def _names(expr: str) -> set[str]:
    return set(re.findall(r"\bkiln_\w+", expr))


def test_every_metric_the_dashboard_queries_is_one_the_server_exports(
        server: Server, assets: Path, traffic: Traffic) -> None:
    dashboard = json.loads((assets / DASHBOARD_FILE).read_text())
    wanted = set().union(*map(_names, queries(dashboard)))
    exported = {name for name, _ in metric_samples(httpx.get(f"{server.url}/metrics").text)}
    assert wanted - exported == set(), f"the server exports: {sorted(exported)}"
    assert {"kiln_model_accuracy", "kiln_input_drift_psi", "kiln_prediction_drift_psi",
            "kiln_prediction_confidence_bucket", "kiln_request_duration_seconds_bucket"} <= wanted


def _promql(expr: str) -> str:
    """A dashboard query as Grafana sends it: every instance and model, a 1m rate window; a
    variable's ``label_values(SELECTOR, LABEL)`` as the series it reads."""
    expr = expr.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$model", ".*")
    found = re.fullmatch(r"label_values\((.*), *\w+\)", expr)
    return found[1] if found else expr


def test_every_dashboard_query_returns_data_through_prometheus(prometheus: str, assets: Path, traffic: Traffic) -> None:
    dashboard = json.loads((assets / DASHBOARD_FILE).read_text())
    waiting = {_promql(expr) for expr in queries(dashboard)}
    assert len(waiting) >= 15
    deadline = time.monotonic() + DEADLINE
    while waiting and time.monotonic() < deadline:  # rates need two scrapes; drift needs its window
        waiting = {expr for expr in waiting if not _query(prometheus, expr)}
        time.sleep(0.5)
    assert waiting == set(), "no data from these dashboard queries"
