"""A CSV file with a header row: numeric feature columns and one target column.

The task comes from ``data.task``; ``auto`` infers it from the target values (over every file, so
train, validation and test agree on the classes):

- strings -> classification over the sorted distinct values;
- integers with at most ``MAX_AUTO_CLASSES`` distinct values -> classification;
- anything else numeric -> regression.

Classification with exactly two classes is ``binary`` (one logit). Features are standardized per
column with training statistics when ``data.normalize`` is set. ``data.val_path``/``data.test_path``
replace the carved validation/test splits.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from kiln.catalog import did_you_mean
from kiln.data.spec import DataBundle, DataSpec, Task
from kiln.data.split import Arrays, make_bundle
from kiln.errors import DataError

if TYPE_CHECKING:
    from kiln.config.data_options import CsvOptions

MAX_AUTO_CLASSES = 20  # auto: integer targets with more distinct values than this are regression


def build(cfg: CsvOptions, seed: int) -> DataBundle:
    """Read ``cfg.path`` (and ``val_path``/``test_path`` when given) into splits and a DataSpec."""
    if cfg.path is None:
        raise DataError("dataset 'csv' needs a file: set data.path=<file.csv>")
    files = {"path": cfg.path, "val_path": cfg.val_path, "test_path": cfg.test_path}
    tables = {key: read_csv(p, cfg.target_column) for key, p in files.items() if p is not None}
    header = tables["path"][0]
    for key, (other, _, _) in tables.items():
        if other != header:
            raise DataError(
                f"data.{key} {files[key]} has columns {other} but data.path has {header}"
            )
    task, classes = infer_task([v for _, _, t in tables.values() for v in t], cfg)

    def arrays(key: str) -> Arrays:
        _, features, targets = tables[key]
        return torch.from_numpy(features), encode(targets, task, classes)

    val = arrays("val_path") if "val_path" in tables else None
    test = arrays("test_path") if "test_path" in tables else None
    features = [c for c in header if c != cfg.target_column]
    spec = DataSpec(
        name="csv",
        task=task,
        input_shape=(len(features),),
        num_classes=1 if task == "regression" else len(classes),
        class_names=tuple(classes),
        extra={"feature_names": features, "target_column": cfg.target_column},
    )
    return make_bundle(*arrays("path"), cfg, seed, spec, per_feature=True, val=val, test=test)


def read_csv(
    path: Path, target_column: str
) -> tuple[list[str], npt.NDArray[np.float32], list[str]]:
    """``(header, features [N, F] float32, target strings)``; every feature must be a number."""
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) must not end up in the first column name
        with path.expanduser().open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV file {path}: {exc}") from exc
    if target_column not in header:
        raise DataError(
            f"{path} has no target column {target_column!r}.{did_you_mean(target_column, header)} "
            f"Columns: {', '.join(header) or '(none: the file is empty)'}. Set data.target_column."
        )
    t = header.index(target_column)
    if len(header) < 2 or not rows:
        raise DataError(
            f"{path} needs at least one feature column and one data row besides the header"
        )
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(
                f"{path}, line {line}: {len(row)} fields but the header has {len(header)}"
            )
    cells = [row[:t] + row[t + 1 :] for _, row in rows]
    try:
        features = np.asarray(cells, dtype=np.float64)
    except ValueError:  # slow path, only to find the culprit: a NaN marks each unreadable cell
        features = np.array([[_number(v) for v in row] for row in cells]).reshape(len(cells), -1)
    if not np.isfinite(features).all():
        r, c = (int(i) for i in np.argwhere(~np.isfinite(features))[0])
        raise DataError(
            f"{path}, line {rows[r][0]}: feature column {header[c if c < t else c + 1]!r} holds "
            f"{cells[r][c]!r}, which is not a finite number. Only numeric features are supported: "
            "encode categories as numbers, fill missing values, or drop the column."
        )
    targets = [row[t].strip() for _, row in rows]
    if "" in targets:
        line = rows[targets.index("")][0]
        raise DataError(f"{path}, line {line}: the target column {target_column!r} is empty")
    return header, features.astype(np.float32), targets


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def infer_task(targets: list[str], cfg: CsvOptions) -> tuple[Task, list[str]]:
    """The task (``cfg.task``, inferred when ``auto``) and sorted class names (regression: none)."""
    numbers = np.array([_number(v) for v in targets])
    numeric = bool(np.isfinite(numbers).all())
    integral = numeric and bool((numbers == np.round(numbers)).all())
    distinct = np.unique(numbers) if numeric else np.unique(np.array(targets))
    column = f"target column {cfg.target_column!r}"
    if cfg.task == "regression" or (cfg.task == "auto" and not integral and numeric):
        if not numeric:
            example = next(v for v, n in zip(targets, numbers, strict=True) if not np.isfinite(n))
            raise DataError(f"data.task=regression but {column} holds {example!r}: not a number")
        return "regression", []
    if cfg.task == "auto" and integral and len(distinct) > MAX_AUTO_CLASSES:
        return "regression", []
    if numeric and not integral:
        example = next(v for v, n in zip(targets, numbers, strict=True) if n != round(n))
        raise DataError(
            f"data.task={cfg.task} but {column} holds non-integer numbers (e.g. {example!r}); "
            "class labels must be integers or strings. Use data.task=regression, or auto."
        )
    classes = [str(int(v)) for v in distinct] if numeric else [str(v) for v in distinct]
    if len(classes) < 2 or (cfg.task == "binary" and len(classes) != 2):
        raise DataError(
            f"data.task={cfg.task} needs {'exactly' if cfg.task == 'binary' else 'at least'} two "
            f"classes but {column} holds {len(classes)}: {classes[:10]}"
        )
    task: Task = (
        "binary" if len(classes) == 2 and cfg.task != "classification" else "classification"
    )
    return task, classes


def encode(targets: list[str], task: Task, classes: list[str]) -> torch.Tensor:
    """Class indices (int64 [N]) for classification and binary; float32 [N, 1] for regression."""
    if task == "regression":
        return torch.tensor([float(v) for v in targets], dtype=torch.float32).reshape(-1, 1)
    numeric = all(np.isfinite(_number(c)) for c in classes)
    index: dict[Any, int] = {(float(c) if numeric else c): i for i, c in enumerate(classes)}
    return torch.tensor([index[float(v) if numeric else v] for v in targets], dtype=torch.int64)
