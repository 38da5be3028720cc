"""Drift on ``/metrics``, computed at scrape time from the shared log (like live accuracy), so
every worker of ``kiln serve --workers N`` reports the same figures.

- ``kiln_drift_window_samples``: predictions in the window (the last ``--drift-window`` logged
  predictions of the served version); the PSI gauges below appear only from ``MIN_SAMPLES``
  (100, or the window when smaller).
- ``kiln_input_drift_psi{feature=COLUMN}``: PSI per input column: ``feature_0`` ... for tabular
  models (the column names of ``kiln monitor export``), ``channel_mean_0``, ``channel_std_0`` ...
  and ``brightness`` for images.
- ``kiln_input_drift_psi_max``: the largest of those (the one to alert on, over 0.2).
- ``kiln_prediction_drift_psi``: PSI of the predicted classes' shares against the validation
  split's (regression: of the predicted value, over its quantile bins).
- ``kiln_prediction_confidence``: a histogram of the top-1 probability over the window
  (classification). A snapshot of the window, not a running total: read its buckets as they are
  (``histogram_quantile(0.5, kiln_prediction_confidence_bucket)``), never through ``rate()``.

A scrape never fails for drift: a failed read is a warning and the families are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from kiln.models.reference import Reference
from kiln.monitor.drift import MIN_SAMPLES, Drift, Window, compare, read_window
from kiln.monitor.store import SharedConnection

log = logging.getLogger("kiln.monitor")

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class DriftCollector:
    """A prometheus_client custom collector of drift against ``reference`` (register it on the
    exposed registry)."""

    def __init__(self, db: SharedConnection, model: str, version: str, reference: Reference,
                 window: int, min_samples: int = MIN_SAMPLES) -> None:
        self.db = db
        self.model = model
        self.version = version
        self.reference = reference
        self.window = window
        self.min_samples = min(min_samples, window)

    def describe(self) -> Iterator[Any]:
        yield from _families().values()  # without samples: registering reads nothing

    def collect(self) -> Iterator[Any]:
        try:
            with self.db.use() as connection:
                window = read_window(connection, self.model, self.version, self.window)
            drift = compare(self.reference, window)
        except Exception as exc:  # the request metrics must still be scraped
            log.warning("drift for /metrics from %s failed: %s", self.db.path, exc)
            return
        yield from self._families(window, drift)

    def _families(self, window: Window, drift: Drift) -> Iterator[Any]:
        families = _families()
        families["samples"].add_metric([], drift.samples)
        yield families["samples"]
        if len(window.confidence):
            yield _confidence(families["confidence"], window.confidence)
        if drift.samples < self.min_samples:
            return
        if drift.inputs:
            for name, value in drift.inputs.items():
                families["inputs"].add_metric([name], value)
            families["input_max"].add_metric([], drift.input_max)
            yield families["inputs"]
            yield families["input_max"]
        if drift.prediction is not None:
            families["prediction"].add_metric([], drift.prediction)
            yield families["prediction"]


def _confidence(family: Any, confidence: np.ndarray) -> Any:
    counts = np.searchsorted(np.sort(confidence), CONFIDENCE_BUCKETS, side="right")
    buckets = [(repr(b), int(c)) for b, c in zip(CONFIDENCE_BUCKETS, counts, strict=True)]
    family.add_metric([], [*buckets, ("+Inf", len(confidence))], float(confidence.sum()))
    return family


def _families() -> dict[str, Any]:
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

    return {
        "samples": GaugeMetricFamily("kiln_drift_window_samples", "Logged predictions in the "
                                     "drift window (--drift-window)"),
        "inputs": GaugeMetricFamily("kiln_input_drift_psi", "Population stability index of an input "
                                    "column over the drift window against the training data",
                                    labels=["feature"]),
        "input_max": GaugeMetricFamily("kiln_input_drift_psi_max", "The largest kiln_input_drift_psi"),
        "prediction": GaugeMetricFamily("kiln_prediction_drift_psi", "Population stability index of "
                                        "the predictions over the drift window against validation"),
        "confidence": HistogramMetricFamily("kiln_prediction_confidence", "Top-1 probability of the "
                                            "predictions in the drift window (a snapshot, not cumulative)"),
    }
