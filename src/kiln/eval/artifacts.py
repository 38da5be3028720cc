"""Write evaluation results as files under ``<run>/eval/``: tables for tools, text for people.

Every writer returns the paths it wrote, so callers can list or log them. Plots live in
:mod:`kiln.eval.plots`; this module needs neither matplotlib nor torch.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kiln.eval.metrics import ClassificationReport
from kiln.runs.layout import write_json, write_text


def confusion_csv(report: ClassificationReport, path: Path) -> Path:
    """The confusion matrix with a header row of predicted classes and a first column of true ones."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ predicted", *report.class_names])
    for name, row in zip(report.class_names, report.confusion, strict=True):
        writer.writerow([name, *(int(v) for v in row)])
    write_text(path, buffer.getvalue())
    return path


def classification_files(report: ClassificationReport, eval_dir: Path, split: str) -> list[Path]:
    """``classification_report_<split>.txt`` (scikit-learn's table), ``.json`` (the same numbers,
    per class and averaged) and ``confusion_matrix_<split>.csv``."""
    text = eval_dir / f"classification_report_{split}.txt"
    write_text(text, report.text)
    data: dict[str, Any] = {
        "split": split,
        "metrics": report.metrics,
        "per_class": report.per_class,
        "confusion_matrix": {"labels": list(report.class_names), "rows_true_columns_predicted":
                             np.asarray(report.confusion).tolist()},
    }
    js = eval_dir / f"classification_report_{split}.json"
    write_json(js, data)
    return [text, js, confusion_csv(report, eval_dir / f"confusion_matrix_{split}.csv")]


def predictions_csv(probs: npt.NDArray[np.floating[Any]], targets: npt.NDArray[Any],
                    class_names: Sequence[str], files: Sequence[Any], path: Path) -> Path:
    """One row per sample of a split read from files: ``index, file, true, predicted``, then the
    probability of each class (``p_<class>``, full float precision, so a served prediction of
    the same file can be compared with it)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "file", "true", "predicted", *(f"p_{name}" for name in class_names)])
    predicted = np.asarray(probs).argmax(axis=1)
    for i, (file, true, pred, row) in enumerate(zip(files, np.asarray(targets).reshape(-1), predicted, probs,
                                                    strict=True)):
        writer.writerow([i, str(file), class_names[int(true)], class_names[int(pred)],
                         *(repr(float(p)) for p in row)])
    write_text(path, buffer.getvalue())
    return path
