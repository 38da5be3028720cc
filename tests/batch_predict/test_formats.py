"""Every input format and output format of ``kiln predict`` on real files, against the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import kiln
from kiln.batch_predict import PredictOptions, predict_file
from tests.batch_predict.conftest import cancer_table, digits_csv, digits_inputs, reference

ONNX_AGREES = 1e-5  # ONNX Runtime against eager torch (the export's parity bound)


def _probabilities(frame: pd.DataFrame, k: int) -> np.ndarray:
    return np.stack([frame["probability" if i == 0 else f"probability_{i + 1}"] for i in range(k)], 1)


def test_csv_with_an_id_column_and_top_k(digits_onnx_run: Path, tmp_path: Path) -> None:
    data = digits_csv(tmp_path / "in.csv", 300)
    report = predict_file(digits_onnx_run, tmp_path / "in.csv", tmp_path / "out.csv",
                          PredictOptions(top_k=3, id_columns=("id",), chunk_size=128))
    assert (report.rows, report.predicted, report.failed, report.backend) == (300, 300, 0, "onnx")
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert list(out.columns) == ["row", "id", "class", "class_name", "probability", "class_2", "class_name_2",
                                 "probability_2", "class_3", "class_name_3", "probability_3"]
    assert out["row"].tolist() == list(range(300))
    assert out["id"].tolist() == data["id"].tolist()  # "000007" stays text, as written
    expected = reference(digits_onnx_run, data.drop(columns="id").to_numpy())
    order = np.argsort(-expected, axis=1, kind="stable")[:, :3]
    assert (out[["class", "class_2", "class_3"]].to_numpy() == order).all()
    assert out["class_name"].astype(str).tolist() == [str(c) for c in order[:, 0]]
    np.testing.assert_allclose(_probabilities(out, 3), np.take_along_axis(expected, order, 1), atol=ONNX_AGREES)
    assert not (tmp_path / "out.csv.errors.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]  # no debris


@pytest.mark.parametrize("suffix", [".parquet", ".npy", ".npz", ".jsonl"])
def test_every_input_format_gives_the_csv_numbers(digits_onnx_run: Path, tmp_path: Path, suffix: str) -> None:
    x = digits_inputs(50)
    digits_csv(tmp_path / "in.csv", 50, ids=False)
    predict_file(digits_onnx_run, tmp_path / "in.csv", tmp_path / "csv.csv")
    path = tmp_path / f"in{suffix}"
    if suffix == ".parquet":
        pd.read_csv(tmp_path / "in.csv").to_parquet(path)
    elif suffix == ".npy":
        np.save(path, x.reshape(50, 1, 8, 8))  # the model's shape, or flat: both are rows
    elif suffix == ".npz":
        np.savez(path, labels=np.zeros(50), x=x)
    else:
        path.write_text("".join(json.dumps(r.reshape(1, 8, 8).tolist() if i % 2 else r.tolist()) + "\n"
                                for i, r in enumerate(x)))
    predict_file(digits_onnx_run, path, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "csv.csv").read_bytes()


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_every_output_format_holds_the_csv_rows(digits_onnx_run: Path, tmp_path: Path, suffix: str) -> None:
    digits_csv(tmp_path / "in.csv", 40)
    options = PredictOptions(top_k=2, id_columns=("id",), chunk_size=16)
    predict_file(digits_onnx_run, tmp_path / "in.csv", tmp_path / "out.csv", options)
    predict_file(digits_onnx_run, tmp_path / "in.csv", tmp_path / f"out{suffix}", options)
    expected = pd.read_csv(tmp_path / "out.csv", dtype={"id": str, "class_name": str, "class_name_2": str})
    if suffix == ".parquet":
        got = pq.read_table(tmp_path / "out.parquet").to_pandas()
        assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups == 3  # a group per chunk
    else:
        got = pd.DataFrame([json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()])
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got.astype(expected.dtypes.to_dict()), expected, rtol=1e-6)


def test_named_features_in_any_order_pass_other_columns_through(cancer_run: Path, tmp_path: Path) -> None:
    table = cancer_table()
    features = [c for c in table.columns if c != "diagnosis"]
    shuffled = table[["diagnosis", *features[::-1]]].copy()
    shuffled.insert(1, "patient", [f"p{i}" for i in range(len(table))])
    shuffled.to_csv(tmp_path / "in.csv", index=False)
    report = predict_file(cancer_run, tmp_path / "in.csv", tmp_path / "out.csv")
    assert report.failed == 0 and report.backend == "torch"  # no export in the run: the eager model
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["row", "diagnosis", "patient", "class", "class_name", "positive_probability"]
    assert out["patient"].tolist() == shuffled["patient"].tolist()
    expected = reference(cancer_run, table[features].to_numpy())[:, 1]
    np.testing.assert_allclose(out["positive_probability"], expected, atol=1e-6)
    assert (out["class"] == (expected >= 0.5)).all()
    assert set(out["class_name"]) <= {"benign", "malignant"}


def test_regression_writes_the_value(regression_run: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    frame.to_parquet(tmp_path / "in.parquet")
    predict_file(regression_run, tmp_path / "in.parquet", tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["row", "target", "prediction"]
    expected = reference(regression_run, frame.drop(columns="target").to_numpy())[:, 0]
    np.testing.assert_allclose(out["prediction"], expected, rtol=1e-5, atol=1e-5)


def test_an_image_folder_recursive_and_sorted(image_run: Path, tmp_path: Path) -> None:
    from kiln.models.package import load_package
    from kiln.serve.inputs import Preprocessor
    from kiln.testing.images import write_digits_folder

    folder = write_digits_folder(tmp_path / "new", classes=3, per_class=3, size=24, formats=("jpg", "png"))
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    report = predict_file(image_run, folder, tmp_path / "out.csv", PredictOptions(top_k=2, chunk_size=4, workers=3))
    assert (report.rows, report.failed) == (9, 0)
    out = pd.read_csv(tmp_path / "out.csv")
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.*") if p.suffix in (".jpg", ".png")
                   and not p.name.startswith("."))
    assert out["path"].tolist() == paths and len(paths) == 9
    pre = Preprocessor(load_package(image_run).spec, 8)
    import torch

    model = load_package(image_run).model
    for path, probability, chosen in zip(out["path"], out["probability"], out["class"], strict=True):
        with torch.no_grad():
            expected = torch.softmax(model(torch.from_numpy(pre.from_image((folder / path).read_bytes(), None))), 1)
        assert chosen == int(expected.argmax()) and abs(probability - float(expected.max())) < 1e-6


def test_kiln_predict_in_memory_takes_arrays_and_frames(digits_onnx_run: Path, cancer_run: Path) -> None:
    x = digits_inputs(20)
    probabilities = kiln.predict(digits_onnx_run, x)
    assert probabilities.shape == (20, 10)
    np.testing.assert_allclose(probabilities, reference(digits_onnx_run, x), atol=ONNX_AGREES)
    frame = cancer_table().head(12)
    out = kiln.predict(cancer_run, frame)
    assert isinstance(out, pd.DataFrame) and out["row"].tolist() == list(range(12))
    assert out["diagnosis"].tolist() == frame["diagnosis"].tolist()
    from_arrow = kiln.predict(cancer_run, pa.Table.from_pandas(frame))
    pd.testing.assert_frame_equal(out, from_arrow)
