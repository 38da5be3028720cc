"""Drift against real ``kiln serve`` processes: traffic like the validation data keeps every
``kiln_input_drift_psi`` under 0.2, shifted traffic raises it over, for a tabular model (a CSV of
five named features, binary, two workers) and an image model (the digits as 1x8x8 images); the
PSI waits for 100 predictions; a package without reference statistics serves without drift.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from kiln.models.reference import REFERENCE
from kiln.monitor.drift import THRESHOLD
from kiln.testing import tiny_config
from kiln.train import Trainer
from tests.serve.conftest import Server, running
from tests.serve.helpers import metric_samples

pytestmark = pytest.mark.slow

WINDOW = 300
FEATURES = ["age", "income", "visits", "score", "flag"]


def table(n: int, seed: int, age_shift: float = 0.0) -> pd.DataFrame:
    """Customers: a normal, a skewed, a count (ties), a uniform and a constant feature."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, n) + age_shift, "income": rng.lognormal(10, 0.5, n),
        "visits": rng.poisson(3, n).astype(float), "score": rng.uniform(0, 1, n), "flag": np.ones(n),
    })
    frame["bought"] = np.where(frame["score"] + frame["visits"] / 10 > 0.8, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("drift-tabular")
    table(2000, seed=0).to_csv(root / "customers.csv", index=False)
    config = tiny_config(root / "runs", "checkpoint.enabled=false", "data.name=csv",
                         f"data.path={root / 'customers.csv'}", "data.target_column=bought",
                         "data.val_fraction=0.25", backends=("jsonl",))
    return Trainer(config, quiet=True).fit().run_dir


def _serve(run: Path, root: Path, *args: str) -> Iterator[tuple[Server, Path]]:
    with running(run, root / "server.log", "--backend", "torch", "--drift-window", str(WINDOW),
                 "--state-dir", str(root / "state"), *args) as server:
        yield server, root / "state" / "monitor.db"


@pytest.fixture(scope="module")
def tabular_server(tabular_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    yield from _serve(tabular_run, tmp_path_factory.mktemp("tabular-server"), "--workers", "2")


@pytest.fixture(scope="module")
def image_server(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    yield from _serve(trained_run, tmp_path_factory.mktemp("image-server"))


def _send(server: Server, db: Path, rows: np.ndarray) -> None:
    """POST ``rows`` in requests of 100, then wait until the log holds them all."""
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as connection:
        before = connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    for start in range(0, len(rows), 100):
        response = httpx.post(f"{server.url}/predict", json={"instances": rows[start:start + 100].tolist()})
        assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    while True:
        with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as connection:
            if connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == before + len(rows):
                return
        assert time.monotonic() < deadline, "the writers never committed the predictions"
        time.sleep(0.05)


def _drift(server: Server) -> tuple[dict[str, float], dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """PSI per input column, and every sample of the scrape (on a fresh connection)."""
    with httpx.Client() as client:
        samples = metric_samples(client.get(f"{server.url}/metrics").text)
    inputs = {dict(labels)["feature"]: v for (name, labels), v in samples.items() if name == "kiln_input_drift_psi"}
    return inputs, samples


def _check(server: Server, db: Path, unshifted: np.ndarray, shifted: np.ndarray, drifted: str) -> dict[str, float]:
    _send(server, db, unshifted[:50])
    inputs, samples = _drift(server)
    assert samples[("kiln_drift_window_samples", ())] == 50
    assert inputs == {} and ("kiln_input_drift_psi_max", ()) not in samples  # under 100: not yet
    assert ("kiln_prediction_drift_psi", ()) not in samples

    _send(server, db, unshifted[50:])
    inputs, samples = _drift(server)
    assert samples[("kiln_drift_window_samples", ())] == WINDOW
    assert inputs and max(inputs.values()) < THRESHOLD, inputs
    assert samples[("kiln_input_drift_psi_max", ())] == max(inputs.values())
    assert samples[("kiln_prediction_drift_psi", ())] < THRESHOLD
    assert samples[("kiln_prediction_confidence_count", ())] == WINDOW
    assert samples[("kiln_prediction_confidence_bucket", (("le", "+Inf"),))] == WINDOW

    _send(server, db, shifted)  # the window now holds shifted traffic only
    after, samples = _drift(server)
    assert after[drifted] > THRESHOLD, after
    assert samples[("kiln_input_drift_psi_max", ())] == max(after.values()) > THRESHOLD
    return after


def test_tabular_drift_stays_under_the_threshold_until_a_feature_shifts(tabular_server: tuple[Server, Path]) -> None:
    server, db = tabular_server
    unshifted = table(WINDOW, seed=1)[FEATURES].to_numpy()
    shifted = table(WINDOW, seed=2, age_shift=10.0)[FEATURES].to_numpy()  # one standard deviation
    after = _check(server, db, unshifted, shifted, drifted="feature_0")  # age
    assert sorted(after) == [f"feature_{i}" for i in range(5)]
    assert max(v for k, v in after.items() if k != "feature_0") < THRESHOLD  # the others did not move
    assert _drift(server)[0] == after  # computed from the shared log: either worker answers alike


def test_image_drift_stays_under_the_threshold_until_the_images_brighten(image_server: tuple[Server, Path]) -> None:
    from sklearn.datasets import load_digits

    server, db = image_server
    digits = load_digits().data / 16.0  # the dataset's units: pixels in 0..1
    rows = digits[np.random.default_rng(0).choice(len(digits), 2 * WINDOW, replace=False)]
    after = _check(server, db, rows[:WINDOW], np.clip(rows[WINDOW:] + 0.15, 0.0, 1.0), drifted="brightness")
    assert sorted(after) == ["brightness", "channel_mean_0", "channel_std_0"]
    assert after["channel_mean_0"] > THRESHOLD


def test_a_package_without_reference_statistics_serves_without_drift(trained_run: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    (old / "models" / REFERENCE).unlink()
    with running(old, tmp_path / "server.log", "--backend", "torch", "--state-dir", str(tmp_path / "state")) as server:
        rows = np.random.default_rng(0).random((150, 64))
        assert httpx.post(f"{server.url}/predict", json={"instances": rows[:100].tolist()}).status_code == 200
        text = httpx.get(f"{server.url}/metrics").text
        assert "kiln_feedback_total" in text and "drift" not in text and "kiln_prediction_confidence" not in text
        assert f"has no {REFERENCE}" in server.output() and "/metrics exports no drift" in server.output()
