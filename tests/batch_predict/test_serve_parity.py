"""Same numbers as serving: ``kiln predict`` and a real ``kiln serve`` (subprocess, HTTP over
loopback) answer the same rows and the same image files with probabilities equal to 1e-6."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from kiln.batch_predict import PredictOptions, predict_file
from tests.batch_predict.conftest import digits_csv
from tests.serve.conftest import running

AGREE = 1e-6  # the bound


def _all_classes(frame: pd.DataFrame, classes: int) -> np.ndarray:
    """Each row's probabilities by class index, from the top-k columns (k = every class)."""
    out = np.zeros((len(frame), classes))
    for rank in range(classes):
        suffix = "" if rank == 0 else f"_{rank + 1}"
        out[np.arange(len(frame)), frame[f"class{suffix}"].to_numpy()] = frame[f"probability{suffix}"]
    return out


def test_rows_match_post_predict(digits_onnx_run: Path, tmp_path: Path) -> None:
    data = digits_csv(tmp_path / "in.csv", 40)
    predict_file(digits_onnx_run, tmp_path / "in.csv", tmp_path / "out.csv",
                 PredictOptions(top_k=10, id_columns=("id",)))
    predicted = _all_classes(pd.read_csv(tmp_path / "out.csv"), 10)
    with running(digits_onnx_run, tmp_path / "serve.log") as server:
        answer = httpx.post(f"{server.url}/predict", timeout=30,
                            json={"instances": data.drop(columns="id").to_numpy().tolist()})
    assert answer.status_code == 200, answer.text
    served = np.asarray(answer.json()["probabilities"])
    assert np.abs(predicted - served).max() <= AGREE
    assert (predicted.argmax(1) == served.argmax(1)).all()


def test_image_files_match_post_predict(image_run: Path, tmp_path: Path) -> None:
    import shutil

    from kiln.testing.images import write_digits_folder

    image_run = Path(shutil.copytree(image_run, tmp_path / image_run.name))  # serve exports into it

    folder = write_digits_folder(tmp_path / "new", classes=3, per_class=2, size=30, formats=("jpg", "png"))
    predict_file(image_run, folder, tmp_path / "out.csv", PredictOptions(top_k=3))  # torch: no export yet
    out = pd.read_csv(tmp_path / "out.csv")
    predicted = _all_classes(out, 3)
    with running(image_run, tmp_path / "serve.log") as server:
        for index, path in enumerate(out["path"]):
            data = (folder / path).read_bytes()
            kind = "image/png" if path.endswith(".png") else "image/jpeg"
            answer = httpx.post(f"{server.url}/predict", content=data, headers={"content-type": kind}, timeout=30)
            assert answer.status_code == 200, answer.text
            assert np.abs(np.asarray(answer.json()["probabilities"][0]) - predicted[index]).max() <= AGREE, path
