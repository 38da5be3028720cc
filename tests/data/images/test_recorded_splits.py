"""A run's splits are recorded when it starts (``<run>/data_splits.csv``) and every later build of
its data reads them: images added to the folder afterwards never reach its test set (nor its
training split on resume), and a recorded image that is gone or changed stops the build, saying
which and how to fix it."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import kiln
from kiln.config.image_options import ImageFolderOptions
from kiln.data import build_data
from kiln.data.images.build import build
from kiln.data.images.recorded import COLUMNS, read_splits, write_splits
from kiln.data.images.scan import ScanError
from kiln.data.spec import DataBundle
from kiln.errors import DataError
from kiln.eval.run_eval import evaluate_run
from kiln.export.samples import held_out_inputs
from kiln.models.package import load_package
from kiln.testing import tiny_config
from kiln.testing.images import write_digits_folder
from kiln.train import Callback, Trainer, TrainState
from kiln.train.trainer import TrainingInterrupted

SIZE = 16
SPLITS = ("train", "val", "test")


def options(**fields: object) -> ImageFolderOptions:
    return ImageFolderOptions.model_validate({"image": {"size": SIZE}, **fields})


def split_files(bundle: DataBundle) -> dict[str, list[Path]]:
    return {name: list(getattr(bundle, name).files) for name in SPLITS if getattr(bundle, name) is not None}


def add_images(root: Path, per_class: int = 6) -> None:
    """New files in every class folder: enough to change what a carve gives each split."""
    for c, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        for i in range(per_class):  # a colour of its own each, or the scan takes them for copies
            Image.new("RGB", (SIZE, SIZE), (40 * i, 90 + 50 * c, 200)).save(folder / f"added_{i}.png")


def recorded(bundle: DataBundle, tmp_path: Path) -> Path:
    path = tmp_path / "run" / "data_splits.csv"
    path.parent.mkdir(exist_ok=True)
    assert write_splits(bundle, path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    return write_digits_folder(tmp_path / "photos", classes=2, per_class=14, size=SIZE, formats=("png", "jpg"))


def test_the_record_lists_every_file_of_every_split_relative_to_the_data_root(photos: Path, tmp_path: Path) -> None:
    bundle = build(options(path=photos), seed=0)
    path = recorded(bundle, tmp_path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    files = split_files(bundle)
    assert [r["path"] for r in rows] == [p.relative_to(photos).as_posix() for s in SPLITS for p in files[s]]
    assert [r["split"] for r in rows] == [s for s in SPLITS for _ in files[s]]
    assert {r["path"].split("/")[0] for r in rows} == {r["label"] for r in rows} == {"digit_0", "digit_1"}
    first = rows[0]
    assert first["sha256"] == hashlib.sha256((photos / first["path"]).read_bytes()).hexdigest()


def test_a_build_from_the_record_ignores_images_added_since(photos: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    original = build(options(path=photos), seed=0)
    record = recorded(original, tmp_path)
    add_images(photos)
    assert split_files(build(options(path=photos), seed=0)) != split_files(original)  # a new carve moves

    with caplog.at_level(logging.WARNING, logger="kiln"):
        again = build_data(options(path=photos), seed=0, recorded_splits=record)
    assert split_files(again) == split_files(original)  # the same files, in the same order
    for name in SPLITS:
        assert getattr(again, name).targets == getattr(original, name).targets
    assert again.spec == original.spec
    assert again.report is not None and again.report["splits"]["test"]["origin"] == "recorded"
    (line,) = [r.getMessage() for r in caplog.records if "not in the run's recorded splits" in r.getMessage()]
    assert "12 image file(s)" in line and "ignored" in line


def test_the_record_follows_the_data_to_another_folder(photos: Path, tmp_path: Path) -> None:
    original = build(options(path=photos), seed=0)
    record = recorded(original, tmp_path)
    moved = shutil.move(photos, tmp_path / "elsewhere")
    again = build(options(path=moved), seed=0, recorded=record)
    assert {k: [p.relative_to(moved) for p in v] for k, v in split_files(again).items()} == {
        k: [p.relative_to(photos) for p in v] for k, v in split_files(original).items()}


def test_a_manifest_run_records_paths_relative_to_the_manifest_folder(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "m" / "images", classes=2, per_class=8, size=SIZE)
    manifest = tmp_path / "m" / "labels.csv"
    lines = ["path,label"] + [f"images/{p.parent.name}/{p.name},{p.parent.name[-1]}" for p in sorted(root.glob("*/*"))]
    manifest.write_text("\n".join(lines) + "\n")
    original = build(options(manifest=manifest), seed=0)
    record = recorded(original, tmp_path)
    assert all(r.path.startswith("images/") for r in read_splits(record))
    manifest.write_text("\n".join(lines[:4]) + "\n")  # the manifest shrinks: the record still holds
    again = build(options(manifest=manifest), seed=0, recorded=record)
    assert split_files(again) == split_files(original) and again.spec == original.spec


@pytest.mark.parametrize("change", ["remove", "edit"])
def test_a_recorded_file_missing_or_changed_stops_the_build_naming_it(photos: Path, tmp_path: Path, change: str) -> None:
    original = build(options(path=photos), seed=0)
    record = recorded(original, tmp_path)
    victims = [split_files(original)["test"][0], split_files(original)["train"][-1]]
    for path in victims:
        if change == "remove":
            path.unlink()
        else:  # the same name, other pixels: only the sha256 tells
            Image.new("RGB", (SIZE, SIZE), (1, 2, 3)).save(path, format="PNG" if path.suffix == ".png" else "JPEG")
    with pytest.raises(ScanError) as err:
        build(options(path=photos), seed=0, recorded=record)
    message = str(err.value)
    assert f"2 of the 28 image files this run's splits are made of (recorded in {record})" in message
    for path in victims:
        assert f"{path.relative_to(photos).as_posix()}: {'missing' if change == 'remove' else 'changed'}" in message
    assert "restore these files" in message and "train a new run" in message
    assert err.value.exit_code == 2


def test_a_record_read_under_other_data_says_the_folder_is_not_the_runs(photos: Path, tmp_path: Path) -> None:
    record = recorded(build(options(path=photos), seed=0), tmp_path)
    other = write_digits_folder(tmp_path / "other", classes=[3, 4], per_class=14, size=SIZE)
    with pytest.raises(ScanError, match=rf"none of the 28 image files .* is under {other}: is it the folder the "
                                        r"run was trained on\?\n  - digit_0/0_\d{4}\.(png|jpg): missing") as err:
        build(options(path=other), seed=0, recorded=record)
    assert "other images need a new run" in str(err.value)


def test_a_damaged_record_is_an_error_naming_its_lines(photos: Path, tmp_path: Path) -> None:
    record = recorded(build(options(path=photos), seed=0), tmp_path)
    lines = record.read_text().splitlines()
    lines[3] = lines[3].replace(",train,", ",holdout,")
    record.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:-10] + "\n")  # cut short too
    with pytest.raises(DataError, match=r"(?s)is damaged \(2 problems\).*line 4: split 'holdout'.*"
                                        r"line 29: sha256 '[0-9a-f]{54}' is not 64 hex digits"):
        build(options(path=photos), seed=0, recorded=record)


def test_a_run_without_a_record_is_carved_anew_with_a_warning(photos: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kiln"):
        bundle = build_data(options(path=photos), seed=0, recorded_splits=tmp_path / "old_run" / "data_splits.csv")
    assert split_files(bundle) == split_files(build(options(path=photos), seed=0))
    assert any("does not exist (a run from before kiln recorded its splits?)" in r.getMessage() for r in caplog.records)


# A whole run, in process: 20 training images in 5 steps of 4 per epoch, 4 val, 4 test.
RUN = ("data.name=image_folder", "data.image.size=16", "model.name=mlp", "model.hidden=[8]", "training.batch_size=4",
       "data.augment=[{name: horizontal_flip}]")


class Terminate(Callback):
    """Sends this process a real SIGTERM after a chosen step: the run checkpoints and stops."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, state: TrainState) -> None:
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return kiln.load_model(run_dir).state_dict()


def test_eval_and_export_after_images_were_added_use_the_recorded_test_set(photos: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "runs", *RUN, f"data.path={photos}", backends=("jsonl",))
    run_dir = Trainer(cfg, quiet=True).fit().run_dir
    assert [r.path for r in read_splits(run_dir / "data_splits.csv")][-4:] == [
        p.relative_to(photos).as_posix() for p in split_files(build(options(path=photos), seed=cfg.run.seed))["test"]]
    before = evaluate_run(run_dir, plots=False, cost=False)
    predictions = (run_dir / "eval" / "predictions_test.csv").read_text()
    spec = load_package(run_dir).spec
    parity_inputs, source = held_out_inputs(run_dir, spec, 16)  # export's parity samples

    add_images(photos)
    after = evaluate_run(run_dir, plots=False, cost=False)
    assert after.metrics == before.metrics and after.metrics["test_samples"] == 4
    assert (run_dir / "eval" / "predictions_test.csv").read_text() == predictions  # same files, same outputs
    again, again_source = held_out_inputs(run_dir, spec, 16)
    assert source == again_source == "test split (4 samples)" and np.array_equal(again, parity_inputs)

    (photos / read_splits(run_dir / "data_splits.csv")[0].path).unlink()  # a training image, gone
    with pytest.raises(ScanError, match=r"1 of the 28 image files this run's splits are made of"):
        evaluate_run(run_dir, plots=False, cost=False)


def test_a_resume_after_images_were_added_trains_on_the_recorded_split(photos: Path, tmp_path: Path) -> None:
    config = (*RUN, f"data.path={photos}", "training.epochs=3")
    straight = Trainer(tiny_config(tmp_path / "straight", *config, backends=("jsonl",)), quiet=True).fit()

    with pytest.raises(TrainingInterrupted) as stopped:
        Trainer(tiny_config(tmp_path / "stopped", *config, backends=("jsonl",)), callbacks=[Terminate(7)],
                quiet=True).fit()
    add_images(photos)
    assert stopped.value.run_dir is not None
    resumed = kiln.resume(stopped.value.run_dir, quiet=True)
    assert resumed.status == "completed"
    a, b = weights(straight.run_dir), weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit: the same 20 training images, same order
    assert (resumed.run_dir / "data_splits.csv").read_text() == (straight.run_dir / "data_splits.csv").read_text()
