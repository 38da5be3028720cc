"""Drift math, exact: PSI on hand-computed shares, quantile bins on data with ties and constants,
the comparison of a window with a reference, the window read from a real SQLite log, and the
collector's families on a real Prometheus registry (absent under the minimum, never an error)."""

from __future__ import annotations

import logging
import math
import sqlite3
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kiln.models import reference as ref
from kiln.models.reference import (
    Bins,
    Reference,
    columns_from_summaries,
    input_columns,
    quantile_bins,
)
from kiln.monitor.drift import EPSILON, Window, compare, psi, read_window
from kiln.monitor.drift_collector import DriftCollector
from kiln.monitor.store import SharedConnection, create, insert_predictions
from kiln.monitor.summary import MAX_FEATURES, InputSummary
from tests.serve.helpers import metric_samples

LN2, LN1_5 = math.log(2), math.log(1.5)


def test_psi_matches_the_formula_on_hand_computed_shares() -> None:
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * LN2 + 0.25 * LN1_5, rel=1e-12)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # symmetric in its two arguments, as the definition is
    assert psi([0.1, 0.9], [0.6, 0.4]) == pytest.approx(psi([0.6, 0.4], [0.1, 0.9]), rel=1e-12)
    assert psi([0.1, 0.9], [0.6, 0.4]) == pytest.approx(0.5 * math.log(6) + 0.5 * math.log(0.9 / 0.4), rel=1e-12)


def test_psi_raises_an_empty_bin_to_epsilon_without_renormalizing() -> None:
    # training never reached bin 2; half the live traffic is there
    expected = 0.5 * LN2 + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert psi([1.0, 0.0], [0.5, 0.5]) == pytest.approx(expected, rel=1e-12)
    assert EPSILON == 1e-4
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1.0])


def test_deciles_of_distinct_values_give_edges_between_values_and_equal_shares() -> None:
    bins = quantile_bins(np.arange(100.0))
    assert bins.edges == tuple(k * 10 - 0.5 for k in range(1, 10))  # quantile 9.9 -> between 9 and 10
    assert bins.proportions == pytest.approx((0.1,) * 10)


def test_ties_never_sit_on_an_edge() -> None:
    values = np.array([0.0] * 50 + [float(v) for v in range(1, 51)])
    bins = quantile_bins(values)
    assert not set(bins.edges) & set(values.tolist())
    assert bins.edges[0] == 0.5 and bins.proportions[0] == 0.5  # the zeros, together, in one bin
    assert len(set(bins.edges)) == len(bins.edges) and sum(bins.proportions) == pytest.approx(1.0)
    # a last-digit difference in a tied value (float32 against float64) keeps its bin
    assert bins.shares([1e-9, -1e-9]).tolist() == bins.shares([0.0, 0.0]).tolist()


def test_a_constant_gets_a_bin_of_its_own_and_a_quantile_at_the_maximum_an_edge_above() -> None:
    constant = quantile_bins(np.full(10, 3.0))
    assert constant.edges == (3.0 - 3e-6, 3.0 + 3e-6) and constant.proportions == (0.0, 1.0, 0.0)
    assert constant.shares([2.0, 3.0, 3.0, 4.0]).tolist() == [0.25, 0.5, 0.25]
    top = quantile_bins(np.array([float(v) for v in range(10)] + [10.0] * 90))
    assert top.edges == (9.5, 10.0 + 1e-5) and top.proportions == pytest.approx((0.1, 0.9, 0.0))
    assert top.shares([11.0]).tolist() == [0.0, 0.0, 1.0]  # past the training range: seen


def test_bins_are_closed_below() -> None:
    bins = Bins((1.0, 2.0), (0.2, 0.3, 0.5))
    assert bins.shares([0.5, 1.0, 1.5, 2.0]).tolist() == [0.25, 0.5, 0.25]
    assert Bins.from_dict(bins.to_dict()) == bins
    with pytest.raises(ValueError, match="increasing edges"):
        Bins.from_dict({"edges": [2.0, 1.0], "proportions": [0.2, 0.3, 0.5]})


def _reference(**kwargs: object) -> Reference:
    base: dict[str, object] = {"split": "validation", "samples": 4, "kind": "tabular",
                               "inputs": {"feature_0": Bins((0.5,), (0.5, 0.5))}}
    return Reference(**{**base, **kwargs})  # type: ignore[arg-type]


def test_compare_gives_the_psi_of_inputs_classes_and_confidence() -> None:
    reference = _reference(classes=("a", "b"), class_proportions=(0.5, 0.5),
                           confidence=Bins((0.75,), (0.5, 0.5)))
    window = Window({"feature_0": np.array([0.0, 1.0, 1.0, 1.0]), "feature_9": np.array([1.0] * 4)},
                    np.array([0, 1, 1, 1]), np.full(4, 0.9), np.array([]))
    drift = compare(reference, window)
    shifted = 0.25 * LN2 + 0.25 * LN1_5
    assert drift.samples == 4
    assert drift.inputs == {"feature_0": pytest.approx(shifted, rel=1e-12)}  # feature_9: no reference
    assert drift.input_max == drift.inputs["feature_0"]
    assert drift.prediction == pytest.approx(shifted, rel=1e-12)
    assert drift.confidence == pytest.approx((EPSILON - 0.5) * math.log(EPSILON / 0.5) + 0.5 * LN2, rel=1e-12)


def test_compare_for_regression_uses_the_prediction_bins_and_an_empty_window_gives_nothing() -> None:
    reference = _reference(prediction=Bins((10.0,), (0.5, 0.5)))
    window = Window({"feature_0": np.array([0.0, 1.0])}, np.array([], dtype=np.int64), np.array([]),
                    np.array([5.0, 20.0]))
    drift = compare(reference, window)
    assert drift.prediction == 0.0 and drift.confidence is None and drift.inputs == {"feature_0": 0.0}
    empty = compare(reference, Window({}, np.array([], dtype=np.int64), np.array([]), np.array([])))
    assert empty.samples == 0 and empty.inputs == {} and empty.prediction is None and empty.input_max is None


@pytest.mark.parametrize(("shape", "image"), [((3, 4, 4), True), ((70,), False), ((1, 8, 8), True)])
def test_training_columns_equal_the_server_summaries_of_the_same_inputs(shape: tuple[int, ...], image: bool) -> None:
    """The reference (kiln.train.reference) and the log (kiln.monitor.summary) summarize alike:
    the normalized batch the server holds, undone, gives the columns training binned."""
    from kiln.data.normalization import broadcast_stat as _broadcast

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 17, size=(50, *shape)) / 16.0  # ties, as pixels have
    mean_values = (0.2, 0.4, 0.6) if shape[0] == 3 else (0.3,)
    std_values = (0.5, 0.25, 0.125) if shape[0] == 3 else (0.2,)
    mean, std = _broadcast(mean_values, shape, 0.0), _broadcast(std_values, shape, 1.0)
    normalized = ((raw - mean) / std).astype(np.float32)
    logged = InputSummary(shape, mean, std, image=image).rows(normalized)
    live = columns_from_summaries(orjson.loads(orjson.dumps(row)) for row in logged)
    assert ref.is_image(shape) == image
    training = input_columns(normalized.astype(np.float64) * std + mean, image)
    assert sorted(live) == sorted(training)
    assert len(training) == (2 * shape[0] + 1 if image else MAX_FEATURES)
    for name in training:
        np.testing.assert_array_equal(live[name], training[name], err_msg=name)
    assert ref.MAX_FEATURES == MAX_FEATURES


def _log(tmp_path: Path, rows: list[tuple[object, ...]]) -> Path:
    path = create(tmp_path / "state")
    connection = sqlite3.connect(path, isolation_level=None)
    insert_predictions(connection, rows)
    connection.close()
    return path


def _row(i: int, version: str = "1", cls: int = 0, value: float = 0.0) -> tuple[object, ...]:
    summary = orjson.dumps({"channel_mean": [value, 2 * value], "channel_std": [0.1, 0.2]}).decode()
    return (f"r{i}", 0, 1000.0 + i, "m", version, cls, str(cls), 0.9, None, summary, None)


def test_the_window_is_the_newest_rows_of_the_served_version(tmp_path: Path) -> None:
    path = _log(tmp_path, [_row(i, value=float(i), cls=i % 2) for i in range(10)]
                + [_row(100 + i, version="2", value=-1.0) for i in range(5)])
    with sqlite3.connect(path) as connection:
        window = read_window(connection, "m", "1", 4)
    assert window.size == 4
    assert window.columns["channel_mean_0"].tolist() == [9.0, 8.0, 7.0, 6.0]
    assert window.columns["brightness"].tolist() == [13.5, 12.0, 10.5, 9.0]  # mean of the channel means
    assert window.classes.tolist() == [1, 0, 1, 0] and window.values.size == 0


def _scrape(collector: DriftCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    return metric_samples(generate_latest(registry).decode())


def test_the_collector_publishes_psi_from_the_minimum_and_the_confidence_histogram(tmp_path: Path) -> None:
    path = _log(tmp_path, [_row(i, value=float(i % 2), cls=i % 2) for i in range(6)])
    reference = Reference("validation", 6, "image", {"channel_mean_0": Bins((0.5,), (0.5, 0.5))},
                          classes=("0", "1"), class_proportions=(0.5, 0.5))
    db = SharedConnection(path)
    try:
        few = _scrape(DriftCollector(db, "m", "1", reference, window=100, min_samples=10))
        assert few[("kiln_drift_window_samples", ())] == 6
        assert not any(name.endswith("_psi") or name.endswith("_psi_max") for name, _ in few)
        assert few[("kiln_prediction_confidence_bucket", (("le", "0.9"),))] == 6
        assert few[("kiln_prediction_confidence_bucket", (("le", "0.8"),))] == 0
        assert few[("kiln_prediction_confidence_count", ())] == 6
        enough = _scrape(DriftCollector(db, "m", "1", reference, window=100, min_samples=6))
        assert enough[("kiln_input_drift_psi", (("feature", "channel_mean_0"),))] == 0.0
        assert enough[("kiln_input_drift_psi_max", ())] == 0.0
        assert enough[("kiln_prediction_drift_psi", ())] == 0.0
        # the minimum is capped by the window: a window of 3 publishes at 3
        small = _scrape(DriftCollector(db, "m", "1", reference, window=3, min_samples=100))
        assert small[("kiln_drift_window_samples", ())] == 3 and ("kiln_prediction_drift_psi", ()) in small
    finally:
        db.close()


def test_a_failed_read_leaves_drift_out_of_the_scrape_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _log(tmp_path, [_row(0)])
    db = SharedConnection(path)
    try:
        with db.use() as connection:
            connection.execute("DROP TABLE predictions")
        with caplog.at_level(logging.WARNING, logger="kiln.monitor"):
            assert _scrape(DriftCollector(db, "m", "1", _reference(), window=10)) == {}
        assert "drift for /metrics" in caplog.text and "no such table" in caplog.text
    finally:
        db.close()
