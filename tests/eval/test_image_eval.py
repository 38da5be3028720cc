"""Eval's image outputs: the worst-classified grid (true and predicted class names, files), the
confusion matrix by class name, and per-file predictions equal to the saved preprocessing's."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kiln.data.images.decode import open_image
from kiln.data.images.preprocess import Preprocessing, from_spec
from kiln.data.images.scan import ScanError
from kiln.errors import DataError
from kiln.eval.artifacts import predictions_csv
from kiln.eval.run_eval import evaluate_run
from kiln.eval.worst import Miss, unnormalize, worst_png, worst_samples
from kiln.models.package import load_package
from kiln.testing.images import write_digits_folder

NAMES = ("cat", "dog", "fox")
PRE = Preprocessing(size=8, resize="stretch", channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))


def _logits(probs: list[list[float]]) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64)).astype(np.float32)


def test_worst_samples_rank_by_the_probability_of_the_true_class() -> None:
    outputs = _logits([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.05, 0.05, 0.9]])
    targets = np.asarray([0, 0, 1, 2])
    misses = worst_samples(outputs, targets, "classification", ["a/x.png", "a/y.jpg", "b/z.png", "c/w.png"],
                           count=3)
    assert [m.index for m in misses] == [1, 2, 0]  # p(true) 0.1, 0.3, 0.7; the 0.9 is left out
    first = misses[0]
    assert (first.true, first.predicted, first.file) == (0, 1, "a/y.jpg")
    assert first.p_true == pytest.approx(0.1, abs=1e-6) and first.p_predicted == pytest.approx(0.8, abs=1e-6)
    assert first.caption(NAMES) == "y.jpg\ntrue cat (0.10)\npredicted dog (0.80)"
    assert Miss(4, 2, 2, 0.9, 0.9).caption(NAMES) == "#4\ntrue fox (0.90)\npredicted fox (0.90)"


def test_unnormalize_gives_back_the_pixels_the_preprocessing_normalized() -> None:
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8))
    inputs = PRE.normalize(pixels).numpy().astype(np.float64)
    np.testing.assert_allclose(unnormalize(inputs, PRE), pixels.numpy() / 255.0, rtol=0, atol=1e-6)
    gray = Preprocessing(size=8, resize="stretch", channels=1, mean=(0.5,), std=(0.25,))
    np.testing.assert_allclose(unnormalize(np.full((1, 1, 2, 2), 4.0), gray), 1.0)  # clipped to 0..1


def _has_colour(image: Image.Image, rgb: tuple[int, int, int], pixels: int = 20) -> bool:
    """Whether at least ``pixels`` pixels are within 2 levels of ``rgb`` per channel."""
    data = np.asarray(image.convert("RGB"), dtype=np.int64)
    return int((np.abs(data - np.asarray(rgb)).max(axis=2) <= 2).sum()) >= pixels


def test_worst_grid_draws_the_images_in_their_own_colours(tmp_path: Path) -> None:
    """Two flat mid-tone images come out in their own colours (un-normalized with the package's
    statistics), not stretched per image to full range, as normalized digits are."""
    tones = [(128, 64, 0), (0, 32, 96)]
    dataset = [(PRE.normalize(torch.tensor(t, dtype=torch.uint8).reshape(3, 1, 1).expand(3, 8, 8)), 0)
               for t in tones]
    misses = [Miss(0, 0, 1, 0.2, 0.7, "orange.png"), Miss(1, 0, 2, 0.1, 0.8, "blue.png")]
    path = worst_png(misses, dataset, NAMES, tmp_path / "worst.png", "worst", PRE)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert _has_colour(image, tones[0]) and _has_colour(image, tones[1])
        assert not _has_colour(image, (255, 128, 0))  # what stretching would have drawn


def test_predictions_csv_names_classes_and_files(tmp_path: Path) -> None:
    probs = np.asarray([[0.25, 0.5, 0.25], [0.1, 0.2, 0.7]])
    path = predictions_csv(probs, np.asarray([1, 0]), NAMES, ["a/1.png", "b/2.jpg"], tmp_path / "p.csv")
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert list(rows[0]) == ["index", "file", "true", "predicted", "p_cat", "p_dog", "p_fox"]
    assert [(r["file"], r["true"], r["predicted"]) for r in rows] == [("a/1.png", "dog", "dog"),
                                                                       ("b/2.jpg", "cat", "fox")]
    assert float(rows[1]["p_fox"]) == 0.7


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN trained one epoch on 3 classes of digit photos (PNG and JPEG, 20 px, read at 16)."""
    from kiln.config.loader import load_config
    from kiln.train import Trainer

    root = tmp_path_factory.mktemp("image-eval")
    folder = write_digits_folder(root / "photos", classes=3, per_class=14, size=20, formats=("png", "jpg"))
    cfg = load_config(None, [
        "run.progress=false", "data.name=image_folder", f"data.path={folder}", "data.image.size=16",
        "data.image.mean=dataset", "data.image.std=dataset", "model.name=cnn", "model.filters=[4]",
        "model.hidden=[8]", "training.epochs=1", "training.batch_size=8", f"run.output_dir={root / 'runs'}",
        "tracking.backends=[jsonl]", "checkpoint.enabled=false",
    ])
    return Path(Trainer(cfg, quiet=True).fit().run_dir)


def _in_process(run: Path, file: str) -> np.ndarray:
    """The package's model on the saved preprocessing of ``file``."""
    package = load_package(run)
    preprocessing = from_spec(package.spec.extra)
    assert preprocessing is not None
    with torch.no_grad():
        logits = package.model(preprocessing(open_image(file, preprocessing.channels))[None])
    return torch.softmax(logits, dim=1)[0].numpy()


def test_eval_of_an_image_folder_run_names_classes_and_files(image_run: Path) -> None:
    result = evaluate_run(image_run, "test", cost=False)
    eval_dir = image_run / "eval"
    names = {p.name for p in result.artifacts}
    assert {"predictions_test.csv", "worst_examples_test.png", "confusion_matrix_test.png",
            "confusion_matrix_test.csv"} <= names
    header = (eval_dir / "confusion_matrix_test.csv").read_text().splitlines()[0]
    assert header == "true \\ predicted,digit_0,digit_1,digit_2"
    report = json.loads((eval_dir / "classification_report_test.json").read_text())
    assert report["confusion_matrix"]["labels"] == ["digit_0", "digit_1", "digit_2"]
    with Image.open(eval_dir / "worst_examples_test.png") as image:
        assert image.format == "PNG" and image.width >= 200

    rows = list(csv.DictReader((eval_dir / "predictions_test.csv").read_text().splitlines()))
    assert len(rows) == result.metrics["test_samples"]
    assert {Path(r["file"]).parent.name for r in rows} == {"digit_0", "digit_1", "digit_2"}
    assert all(r["true"] == Path(r["file"]).parent.name for r in rows)  # labels are the folders
    correct = sum(r["true"] == r["predicted"] for r in rows) / len(rows)
    assert correct == pytest.approx(result.metrics["test_accuracy"])
    for row in rows:  # eval's probabilities are the saved preprocessing's, file by file
        evaluated = [float(row[f"p_{n}"]) for n in ("digit_0", "digit_1", "digit_2")]
        np.testing.assert_allclose(evaluated, _in_process(image_run, row["file"]), rtol=0, atol=1e-6)


def test_eval_feeds_the_saved_preprocessing_whatever_the_data_resolves_to(image_run: Path) -> None:
    """An override that changes what data.image resolves to (other statistics) changes nothing:
    the model is fed the preprocessing it was trained with, as serve feeds it."""
    saved = from_spec(load_package(image_run).spec.extra)
    assert saved is not None and saved.std != (0.5, 0.5, 0.5)
    plain = evaluate_run(image_run, "test", plots=False, cost=False).metrics
    overridden = evaluate_run(image_run, "test", ["data.image.std=[0.5,0.5,0.5]"], plots=False, cost=False).metrics
    assert overridden == plain


def test_eval_refuses_data_whose_classes_are_not_the_models(image_run: Path, tmp_path: Path) -> None:
    other = write_digits_folder(tmp_path / "other", classes=[3, 4, 5], per_class=8, size=20)
    # the run records its splits: another folder holds none of its files
    with pytest.raises(ScanError, match=r"none of the \d+ image files .* is under .*other: is it the "
                                        r"folder the run was trained on"):
        evaluate_run(image_run, "test", [f"data.path={other}"], plots=False, cost=False)
    # a run from before split records splits the folder it is given, and the class check stops it
    old = Path(shutil.copytree(image_run, tmp_path / "old_run"))
    (old / "data_splits.csv").unlink()
    with pytest.raises(DataError, match=r"trained on classes \['digit_0', 'digit_1', 'digit_2'\].*"
                                        r"\['digit_3', 'digit_4', 'digit_5'\]"):
        evaluate_run(old, "test", [f"data.path={other}"], plots=False, cost=False)


def test_eval_of_the_training_split_sees_the_images_not_an_augmentation(image_run: Path) -> None:
    """Augmentation is part of training, not of the data: evaluating the training split of an
    augmented run feeds each file through the saved preprocessing alone."""
    result = evaluate_run(image_run, "train", ["data.augment=[{name: rotation, degrees: 90}]"],
                          plots=False, cost=False)
    rows = list(csv.DictReader((image_run / "eval" / "predictions_train.csv").read_text().splitlines()))
    assert len(rows) == result.metrics["train_samples"] > 0
    for row in rows[:8]:
        evaluated = [float(row[f"p_{n}"]) for n in ("digit_0", "digit_1", "digit_2")]
        np.testing.assert_allclose(evaluated, _in_process(image_run, row["file"]), rtol=0, atol=1e-6)
