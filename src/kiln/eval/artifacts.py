"""Write evaluation results as files under ``<run>/eval/``: tables for tools, text for people.

Every writer returns the paths it wrote, so callers can list or log them. Plots live in
:mod:`kiln.eval.plots`; this module needs neither matplotlib nor torch.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

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
