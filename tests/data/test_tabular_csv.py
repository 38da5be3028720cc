"""CSV datasets: task inference, target encoding, per-feature standardization and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from kiln.config.data_options import CsvOptions
from kiln.data.tabular import build
from kiln.errors import DataError


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _build(path: Path, **kwargs: Any) -> Any:
    options = {"val_fraction": 0.0, "test_fraction": 0.0, **kwargs}
    return build(CsvOptions(path=path, **options), seed=0)


def _tensors(ds: object) -> tuple[torch.Tensor, ...]:
    assert isinstance(ds, TensorDataset)
    return ds.tensors


def test_string_targets_are_classes_in_sorted_order(tmp_path: Path) -> None:
    rows = [f"{i},{i % 4},{['cat', 'dog', 'ant'][i % 3]}" for i in range(30)]
    bundle = _build(_csv(tmp_path / "a.csv", "a,b,target", rows))
    assert bundle.spec.task == "classification"
    assert bundle.spec.class_names == ("ant", "cat", "dog") and bundle.spec.num_classes == 3
    assert bundle.spec.input_shape == (2,) and bundle.spec.extra["feature_names"] == ["a", "b"]
    _, y = _tensors(bundle.train)
    assert y.dtype == torch.int64 and y[:3].tolist() == [1, 2, 0]  # cat, dog, ant


def test_two_integer_values_are_binary_with_int64_labels(tmp_path: Path) -> None:
    rows = [f"{i * 0.5},{1 + (i % 2)}" for i in range(20)]
    bundle = _build(_csv(tmp_path / "b.csv", "x,label", rows), target_column="label")
    assert bundle.spec.task == "binary" and bundle.spec.num_classes == 2
    assert bundle.spec.class_names == ("1", "2")
    _, y = _tensors(bundle.train)
    assert y.dtype == torch.int64 and y[:4].tolist() == [0, 1, 0, 1]


def test_explicit_classification_keeps_two_classes_as_softmax(tmp_path: Path) -> None:
    rows = [f"{i},{i % 2}" for i in range(20)]
    bundle = _build(_csv(tmp_path / "b.csv", "x,target", rows), task="classification")
    assert bundle.spec.task == "classification" and bundle.spec.num_classes == 2


def test_real_or_many_valued_targets_are_regression(tmp_path: Path) -> None:
    real = _build(_csv(tmp_path / "r.csv", "x,target", [f"{i},{i / 3}" for i in range(30)]))
    many = _build(_csv(tmp_path / "m.csv", "x,target", [f"{i},{i}" for i in range(21)]))
    assert real.spec.task == many.spec.task == "regression"
    assert real.spec.num_classes == 1 and real.spec.class_names == ()
    _, y = _tensors(real.train)
    assert y.shape == (30, 1) and y.dtype == torch.float32
    assert y[3, 0].item() == pytest.approx(1.0)
    few = _build(_csv(tmp_path / "f.csv", "x,target", [f"{i},{i % 20}" for i in range(40)]))
    assert few.spec.task == "classification" and few.spec.num_classes == 20


def test_features_are_standardized_with_training_statistics(tmp_path: Path) -> None:
    rows = [f"{i},{100 + 10 * i},7,{i % 2}" for i in range(50)]
    bundle = _build(_csv(tmp_path / "s.csv", "a,b,const,target", rows), val_fraction=0.2)
    x, _ = _tensors(bundle.train)
    assert torch.allclose(x.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std(0, correction=0), torch.tensor([1.0, 1.0, 0.0]), atol=1e-5)
    assert len(bundle.spec.mean) == 3 and bundle.spec.std[2] == 1.0  # constant: centred only


def test_explicit_val_and_test_files_replace_the_fractions(tmp_path: Path) -> None:
    header = "x,target"
    train = _csv(tmp_path / "train.csv", header, [f"{i},{'ab'[i % 2]}" for i in range(20)])
    val = _csv(tmp_path / "val.csv", header, ["1,a", "2,b", "3,c"])  # c appears only here
    test = _csv(tmp_path / "test.csv", header, ["4,b"])
    bundle = build(
        CsvOptions(path=train, val_path=val, test_path=test, val_fraction=0.5), seed=0
    )
    sizes = [len(_tensors(split)[0]) for split in (bundle.train, bundle.val, bundle.test)]
    assert sizes == [20, 3, 1]
    assert bundle.spec.class_names == ("a", "b", "c")
    assert _tensors(bundle.val)[1].tolist() == [0, 1, 2]


def test_missing_target_column_lists_the_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", "sepal,petal,species", ["1,2,x", "3,4,y"])
    with pytest.raises(
        DataError, match=r"no target column 'target'\. Columns: sepal, petal, species"
    ):
        _build(path)
    with pytest.raises(DataError, match="Did you mean 'species'"):
        _build(path, target_column="specie")


def test_non_numeric_feature_names_the_column_and_line(tmp_path: Path) -> None:
    path = _csv(tmp_path / "n.csv", "a,color,target", ["1,2,0", "2,3,1", "3,red,0"])
    with pytest.raises(DataError, match=r"line 4: feature column 'color' holds 'red'"):
        _build(path)
    empty = _csv(tmp_path / "e.csv", "a,b,target", ["1,2,0", ",3,1"])
    with pytest.raises(DataError, match=r"line 3: feature column 'a' holds ''"):
        _build(empty)


def test_malformed_files_and_impossible_tasks_are_data_errors(tmp_path: Path) -> None:
    ragged = _csv(tmp_path / "r.csv", "a,target", ["1,0", "2,1,5"])
    with pytest.raises(DataError, match="line 3: 3 fields but the header has 2"):
        _build(ragged)
    three = _csv(tmp_path / "t.csv", "a,target", ["1,0", "2,1", "3,2"])
    with pytest.raises(DataError, match="exactly two classes but target column 'target' holds 3"):
        _build(three, task="binary")
    fractional = _csv(tmp_path / "f.csv", "a,target", ["1,0.5", "2,1"])
    with pytest.raises(DataError, match=r"non-integer numbers \(e\.g\. '0\.5'\)"):
        _build(fractional, task="classification")
    words = _csv(tmp_path / "w.csv", "a,target", ["1,low", "2,high"])
    with pytest.raises(DataError, match="regression but target column 'target' holds 'low'"):
        _build(words, task="regression")
    with pytest.raises(DataError, match="cannot read CSV file"):
        _build(tmp_path / "absent.csv")
    with pytest.raises(DataError, match=r"set data\.path"):
        build(CsvOptions(), seed=0)
