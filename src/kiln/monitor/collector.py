"""Live accuracy for ``/metrics``, read from the shared log at scrape time.

The numbers come from the SQLite file every worker writes, not from counters in each process, so
whichever worker answers the scrape reports the same totals: ``kiln serve --workers N`` is right
by construction. Every query is over the served model's name and version only.

- ``kiln_feedback_total{outcome="correct|wrong"}``: feedback ever received (never decreases;
  kept in ``feedback_counts``, untouched by pruning).
- ``kiln_model_accuracy``: the share of correct predictions among the last ``window`` feedback
  rows by arrival time (absent until the first feedback).
- ``kiln_model_accuracy_samples``: how many rows that window holds (alert only when it is large
  enough to mean something).
- ``kiln_class_recall{class=NAME}``: per true class in the same window, the share the model
  predicted right (absent for a class with no feedback in the window).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from kiln.monitor.store import SharedConnection

log = logging.getLogger("kiln.monitor")


class FeedbackCollector:
    """A prometheus_client custom collector over the log (register it on the exposed registry)."""

    def __init__(self, db: SharedConnection, model: str, version: str, window: int) -> None:
        self.db = db
        self.model = model
        self.version = version
        self.window = window

    def describe(self) -> Iterator[Any]:
        yield from _families()  # without samples: registering reads nothing

    def collect(self) -> Iterator[Any]:
        read = self._read()
        if read is None:
            return  # absent for one scrape, rather than a counter that falls to 0
        counts, recent = read
        families = _families()
        total, accuracy, samples, recall = families
        for outcome in ("correct", "wrong"):
            total.add_metric([outcome], counts.get(outcome, 0))
        samples.add_metric([], len(recent))
        if recent:
            accuracy.add_metric([], sum(right for _, right in recent) / len(recent))
            per_class: dict[str, list[int]] = {}
            for label, right in recent:
                per_class.setdefault(label, []).append(right)
            for label in sorted(per_class):
                hits = per_class[label]
                recall.add_metric([label], sum(hits) / len(hits))
        yield from families

    def _read(self) -> tuple[dict[str, int], list[tuple[str, int]]] | None:
        key = (self.model, self.version)
        try:
            with self.db.use() as connection:
                counts = dict(connection.execute(
                    "SELECT outcome, n FROM feedback_counts WHERE model = ? AND version = ?", key).fetchall())
                recent = connection.execute(
                    "SELECT label_name, correct FROM feedback WHERE model = ? AND version = ? "
                    "ORDER BY time DESC, rowid DESC LIMIT ?", (*key, self.window)).fetchall()
        except Exception as exc:  # a scrape must answer: the request metrics matter as much
            log.warning("reading %s for /metrics failed: %s", self.db.path, exc)
            return None
        return counts, [(str(label), int(right)) for label, right in recent]


def _families() -> list[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    families = [
        CounterMetricFamily("kiln_feedback", "Feedback labels received, by whether the logged "
                            "prediction was right", labels=["outcome"]),
        GaugeMetricFamily("kiln_model_accuracy", "Share of correct predictions among the last "
                          "--accuracy-window feedback labels"),
        GaugeMetricFamily("kiln_model_accuracy_samples", "Feedback labels in the accuracy window"),
        GaugeMetricFamily("kiln_class_recall", "Per true class, share predicted right in the "
                          "accuracy window", labels=["class"]),
    ]
    return families
