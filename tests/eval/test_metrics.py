"""Quality metrics on known predictions, checked against scikit-learn computed independently."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from kiln.eval.metrics import (
    CLASSIFICATION_METRICS,
    classification_report,
    per_sample_loss,
    probabilities,
    regression_metrics,
)

# 3 classes, 8 samples; logits chosen so the predictions are known: argmax of each row.
LOGITS = np.array([
    [3.0, 0.1, 0.2], [2.0, 1.0, 0.1], [0.1, 2.5, 0.3], [0.2, 0.1, 1.9],
    [0.3, 2.2, 0.1], [1.5, 0.2, 0.1], [0.1, 0.2, 3.1], [0.1, 1.2, 1.0],
], dtype=np.float32)
TARGETS = np.array([0, 1, 1, 2, 1, 0, 2, 2])
PREDICTED = np.array([0, 0, 1, 2, 1, 0, 2, 1])


def test_probabilities_are_a_softmax() -> None:
    probs = probabilities(LOGITS, "classification")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(probs.argmax(axis=1), PREDICTED)
    binary = probabilities(np.array([[0.0], [2.0]]), "binary")
    np.testing.assert_allclose(binary[:, 1], [0.5, 1 / (1 + np.exp(-2.0))])


def test_classification_metrics_match_scikit_learn() -> None:
    report = classification_report(LOGITS, TARGETS, "classification", ("cat", "dog", "eel"))
    m = report.metrics
    assert set(m) == set(CLASSIFICATION_METRICS)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(TARGETS, PREDICTED)) == pytest.approx(6 / 8)
    for average in ("macro", "weighted"):
        assert m[f"f1_{average}"] == pytest.approx(skm.f1_score(TARGETS, PREDICTED, average=average))
        assert m[f"precision_{average}"] == pytest.approx(skm.precision_score(TARGETS, PREDICTED, average=average))
        assert m[f"recall_{average}"] == pytest.approx(skm.recall_score(TARGETS, PREDICTED, average=average))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(TARGETS, PREDICTED))
    softmax = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    assert m["log_loss"] == pytest.approx(skm.log_loss(TARGETS, softmax), rel=1e-6)
    recalls = skm.recall_score(TARGETS, PREDICTED, average=None)
    assert m["min_class_recall"] == pytest.approx(recalls.min()) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(report.confusion, skm.confusion_matrix(TARGETS, PREDICTED))
    rows = {r["class"]: r for r in report.per_class}
    assert rows["dog"]["support"] == 3 and rows["dog"]["recall"] == pytest.approx(2 / 3)
    assert rows["cat"]["precision"] == pytest.approx(2 / 3)
    assert "cat" in report.text and "macro avg" in report.text


def test_a_class_missing_from_the_split_keeps_its_row_but_not_the_minimum() -> None:
    # predictions 0, 1, 2 for true classes 0, 2, 2: class 1 never occurs
    report = classification_report(LOGITS[[0, 2, 3]], np.array([0, 2, 2]), "classification")
    assert [r["support"] for r in report.per_class] == [1, 0, 2]
    assert report.class_names == ("0", "1", "2")
    assert report.metrics["min_class_recall"] == pytest.approx(0.5)  # class 2: 1 of 2


def test_binary_metrics() -> None:
    logits = np.array([[-2.0], [1.0], [0.5], [-0.1]], dtype=np.float32)
    targets = np.array([0, 1, 0, 1])
    report = classification_report(logits, targets, "binary", ("no", "yes"))
    assert report.metrics["accuracy"] == pytest.approx(0.5)
    p = 1 / (1 + np.exp(-logits[:, 0]))
    assert report.metrics["log_loss"] == pytest.approx(skm.log_loss(targets, p), rel=1e-6)


def test_regression_metrics_match_scikit_learn() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([[1.5], [1.5], [3.0], [5.0]])
    m = regression_metrics(pred, y)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred[:, 0]))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred[:, 0])))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred[:, 0]))


def test_per_sample_loss_ranks_the_worst_misses_first() -> None:
    losses = per_sample_loss(LOGITS, TARGETS, "classification")
    softmax = probabilities(LOGITS, "classification")
    np.testing.assert_allclose(losses, -np.log(softmax[np.arange(8), TARGETS]))
    assert set(np.argsort(-losses)[:2]) == {1, 7}  # the two misclassified samples
