"""Eval's image outputs: the worst-classified grid (true and predicted class names, files), the
confusion matrix by class name, and per-file predictions equal to the saved preprocessing's."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kiln.data.images.preprocess import Preprocessing
from kiln.eval.artifacts import predictions_csv
from kiln.eval.worst import Miss, unnormalize, worst_png, worst_samples

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
