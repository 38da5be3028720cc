"""Quality metrics from a model's raw outputs and the true targets, computed with scikit-learn.

Pure numpy in, plain Python out (no torch, no matplotlib), so the numbers can be checked against
scikit-learn directly and reused by ``kiln gate`` and reports. Keys are unprefixed here
(``f1_macro``); :mod:`kiln.eval.run_eval` prefixes them with the split (``test_f1_macro``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

CLASSIFICATION_METRICS = (
    "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
    "precision_weighted", "recall_weighted", "f1_weighted", "log_loss",
    "min_class_recall", "min_class_precision", "min_class_f1",
)
REGRESSION_METRICS = ("mae", "mse", "rmse", "r2")


@dataclass(frozen=True)
class ClassificationReport:
    """Everything measured for a classifier on one split."""

    metrics: dict[str, float]
    per_class: list[dict[str, Any]]  # one row per class: class, precision, recall, f1, support
    confusion: npt.NDArray[np.int64]  # rows: true class, columns: predicted class
    text: str  # scikit-learn's classification_report, for humans
    class_names: tuple[str, ...] = field(default=())


def probabilities(outputs: npt.NDArray[np.floating[Any]], task: str) -> npt.NDArray[np.float64]:
    """Class probabilities (N x K) from logits: softmax, or sigmoid as two columns for binary."""
    logits = np.asarray(outputs, dtype=np.float64)
    if task == "binary":
        p = 1.0 / (1.0 + np.exp(-logits.reshape(len(logits), -1)[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs: npt.NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return probs


def classification_report(
    outputs: npt.NDArray[np.floating[Any]],
    targets: npt.NDArray[np.integer[Any]],
    task: str,
    class_names: Sequence[str] = (),
) -> ClassificationReport:
    """Accuracy, macro/weighted precision/recall/F1, log loss and per-class numbers.

    Classes absent from ``targets`` still get a row (support 0), so a class the split lacks is
    visible rather than silently dropped; their zero recall is left out of ``min_class_*``.
    """
    from sklearn import metrics as skm

    probs = probabilities(outputs, task)
    y_true = np.asarray(targets, dtype=np.int64).reshape(-1)
    y_pred = probs.argmax(axis=1)
    labels = list(range(probs.shape[1]))
    names = tuple(class_names) if len(class_names) == len(labels) else tuple(str(c) for c in labels)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = support > 0
    metrics = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(np.mean(recall[present])) if present.any() else 0.0,
        "log_loss": float(skm.log_loss(y_true, probs, labels=labels)),
        "min_class_recall": float(recall[present].min()) if present.any() else 0.0,
        "min_class_precision": float(precision[present].min()) if present.any() else 0.0,
        "min_class_f1": float(f1[present].min()) if present.any() else 0.0,
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        metrics.update({f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)})
    per_class = [
        {"class": names[i], "index": i, "precision": float(precision[i]), "recall": float(recall[i]),
         "f1": float(f1[i]), "support": int(support[i])}
        for i in labels
    ]
    confusion = skm.confusion_matrix(y_true, y_pred, labels=labels).astype(np.int64)
    text = skm.classification_report(
        y_true, y_pred, labels=labels, target_names=list(names), digits=4, zero_division=0
    )
    return ClassificationReport(metrics, per_class, confusion, str(text), names)


def regression_metrics(outputs: npt.NDArray[np.floating[Any]], targets: npt.NDArray[np.floating[Any]]) -> dict[str, float]:
    """MAE, MSE, RMSE and R² (R² is undefined, hence NaN, for fewer than two samples)."""
    from sklearn import metrics as skm

    y_true = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    y_pred = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    mse = float(skm.mean_squared_error(y_true, y_pred))
    return {
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) >= 2 else float("nan"),
    }


def per_sample_loss(outputs: npt.NDArray[np.floating[Any]], targets: npt.NDArray[np.integer[Any]], task: str) -> npt.NDArray[np.float64]:
    """Negative log-probability of the true class per sample: how badly each one was missed."""
    probs = probabilities(outputs, task)
    y = np.asarray(targets, dtype=np.int64).reshape(-1)
    picked = probs[np.arange(len(y)), y]
    loss: npt.NDArray[np.float64] = -np.log(np.clip(picked, 1e-15, 1.0))
    return loss
