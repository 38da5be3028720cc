"""Drift: how far the last predictions' inputs and answers are from the training data's.

The measure is the population stability index over the reference's bins
(:mod:`kiln.models.reference`), with ``e`` the reference share and ``a`` the live share of bin i:

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

An empty bin would make the logarithm infinite, so each share is first raised to at least
``EPSILON`` (1e-4), without renormalizing: a bin the training data never reached that live
traffic fills contributes about ``a * ln(a / 1e-4)``, large but finite. The usual reading:
under 0.1 no shift, 0.1 to 0.2 a moderate one, over ``THRESHOLD`` (0.2) a shift worth an alert.

The live side is a window of the served model version's last N logged predictions, read with
one query from the shared log, so every worker computes the same figures; under ``MIN_SAMPLES``
predictions the PSI is not published (sampling noise alone makes the PSI of a few dozen samples
large). Used by the ``/metrics`` collector (:mod:`kiln.monitor.drift_collector`) and
``kiln monitor report``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kiln.models.reference import FloatArray, Reference, columns_from_summaries

EPSILON = 1e-4
THRESHOLD = 0.2
MIN_SAMPLES = 100
WINDOW_QUERY = ("SELECT summary, class, probability, value FROM predictions WHERE model = ? AND "
                "version = ? ORDER BY time DESC, rowid DESC LIMIT ?")


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, epsilon: float = EPSILON) -> float:
    """The population stability index of ``actual`` shares against ``expected`` ones.

    >>> round(psi([0.5, 0.5], [0.25, 0.75]), 4)
    0.2747
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs shares over the same bins, got {e.shape} and {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Window:
    """The last logged predictions of one model version, newest first, as arrays."""

    columns: dict[str, FloatArray]  # input columns, named as in the reference
    classes: npt.NDArray[np.int64]  # predicted class per row (classification; empty otherwise)
    confidence: FloatArray  # its probability
    values: FloatArray  # the predicted value (regression; empty otherwise)

    @property
    def size(self) -> int:
        return max(len(self.classes), len(self.values))


def read_window(connection: sqlite3.Connection, model: str, version: str, size: int) -> Window:
    """The last ``size`` predictions of ``model`` ``version`` in the log, in one query."""
    import orjson

    rows = connection.execute(WINDOW_QUERY, (model, version, size)).fetchall()
    classified = [r for r in rows if r[1] is not None]
    regressed = [r for r in rows if r[1] is None and r[3] is not None]
    return Window(
        columns=columns_from_summaries(orjson.loads(r[0]) for r in rows),
        classes=np.asarray([r[1] for r in classified], dtype=np.int64),
        confidence=np.asarray([r[2] for r in classified], dtype=np.float64),
        values=np.asarray([r[3] for r in regressed], dtype=np.float64),
    )


@dataclass(frozen=True)
class Drift:
    """PSI of a window against a reference: per input column, of the predictions (classes, or
    the value for regression) and of the top-1 confidence; None where there is nothing to compare."""

    samples: int
    inputs: dict[str, float] = field(default_factory=dict)
    prediction: float | None = None
    confidence: float | None = None

    @property
    def input_max(self) -> float | None:
        return max(self.inputs.values()) if self.inputs else None


def compare(reference: Reference, window: Window) -> Drift:
    """The drift of ``window`` from ``reference`` (columns missing on either side are skipped)."""
    if window.size == 0:
        return Drift(0)
    inputs = {name: psi(bins.proportions, bins.shares(window.columns[name]))
              for name, bins in reference.inputs.items()
              if name in window.columns and len(window.columns[name])}
    prediction = confidence = None
    if reference.classes and len(window.classes):
        live = np.bincount(window.classes, minlength=len(reference.classes))[: len(reference.classes)]
        prediction = psi(reference.class_proportions, live / len(window.classes))
        if reference.confidence is not None:
            confidence = psi(reference.confidence.proportions, reference.confidence.shares(window.confidence))
    elif reference.prediction is not None and len(window.values):
        prediction = psi(reference.prediction.proportions, reference.prediction.shares(window.values))
    return Drift(window.size, inputs, prediction, confidence)
