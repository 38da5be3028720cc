"""``data.name: image_folder`` on real image files: both layouts and a manifest, the stratified
seeded carve, the DataSpec and report, the lazy dataset and its memory and disk caches."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from kiln.config.image_options import ImageFolderOptions
from kiln.data import build_data, check_bundle
from kiln.data.images.build import build
from kiln.data.images.dataset import ImageFolderDataset
from kiln.data.images.decode import open_image
from kiln.data.images.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from kiln.data.spec import DataBundle
from kiln.testing.images import write_digits_folder

SIZE = 16
CLASSES = ("digit_0", "digit_1", "digit_2")


def options(root: Path | None = None, **extra: object) -> ImageFolderOptions:
    image = {"size": SIZE, **extra.pop("image", {})}  # type: ignore[dict-item]
    return ImageFolderOptions.model_validate({"path": root, "image": image, **extra})


def split_files(bundle: DataBundle) -> dict[str, list[Path]]:
    return {name: list(getattr(bundle, name).files) for name in ("train", "val", "test") if getattr(bundle, name)}


def split_classes(bundle: DataBundle, name: str) -> Counter[str]:
    dataset = getattr(bundle, name)
    return Counter(bundle.spec.class_names[t] for t in dataset.targets)


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    return write_digits_folder(tmp_path / "flat", classes=3, per_class=10, size=SIZE, formats=("png", "jpg"))


def test_class_folders_are_carved_per_class_with_every_class_in_every_split(flat: Path) -> None:
    bundle = check_bundle(build(options(flat), seed=3), "image_folder")
    files = split_files(bundle)
    for name in ("train", "val", "test"):  # 10 a class: test 2 (of 10), val 1 (of 8), train 7
        assert split_classes(bundle, name) == dict.fromkeys(CLASSES, {"train": 7, "val": 1, "test": 2}[name])
        for path, target in zip(files[name], getattr(bundle, name).targets, strict=True):
            assert path.parent.name == CLASSES[target]  # each file keeps its folder's class
    everything = [p for group in files.values() for p in group]
    assert len(everything) == len(set(everything)) == 30
    assert bundle.report is not None and bundle.report["layout"] == "class_folders"
    assert bundle.report["splits"]["val"] == {"origin": "carved", "images": 3, "per_class": dict.fromkeys(CLASSES, 1)}


def test_the_carve_is_seeded_and_the_test_split_does_not_follow_the_run_seed(flat: Path) -> None:
    first, again, other = (split_files(build(options(flat), seed=s)) for s in (3, 3, 4))
    assert first == again
    assert first["test"] == other["test"]  # fixed seed: runs with other seeds stay comparable
    assert first["val"] != other["val"]  # the run seed carves validation


def test_split_folders_are_used_as_given(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "s", classes=3, per_class=10, size=SIZE, layout="splits")
    files = split_files(build(options(root), seed=0))
    for name in ("train", "val", "test"):
        assert files[name] == sorted(root.glob(f"{name}/*/*.png"), key=lambda p: (p.parent.name, p.name))


def test_a_missing_val_folder_is_carved_from_train(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "s", classes=3, per_class=10, size=SIZE, layout="splits")
    for path in root.glob("val/*/*"):
        path.unlink()
    for folder in root.glob("val/*"):
        folder.rmdir()
    (root / "val").rmdir()
    bundle = build(options(root), seed=0)
    files = split_files(bundle)
    given_train = set(root.glob("train/*/*.png"))
    assert set(files["val"]) | set(files["train"]) == given_train  # val came out of train
    assert split_classes(bundle, "val") == dict.fromkeys(CLASSES, 1)
    assert files["test"] == sorted(root.glob("test/*/*.png"))
    assert bundle.report is not None
    origins = {k: v["origin"] for k, v in bundle.report["splits"].items()}
    assert origins == {"train": "given", "val": "carved", "test": "given"}


def test_a_manifest_gives_labels_that_are_not_folder_names(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "m" / "images", classes=2, per_class=6, size=SIZE)
    rows = ["path,label"]
    rows += [f"images/digit_0/{p.name},zero" for p in sorted((root / "digit_0").iterdir())]
    rows += [f"{p.resolve()},one" for p in sorted((root / "digit_1").iterdir())]  # absolute paths too
    manifest = tmp_path / "m" / "labels.csv"
    manifest.write_text("\n".join(rows) + "\n")
    bundle = build(options(manifest=manifest, val_fraction=0.0, test_fraction=0.2), seed=0)
    assert bundle.spec.class_names == ("one", "zero")  # sorted labels
    assert bundle.report is not None and bundle.report["layout"] == "manifest"
    for name in ("train", "test"):
        for path, target in zip(getattr(bundle, name).files, getattr(bundle, name).targets, strict=True):
            assert path.parent.name == {"one": "digit_1", "zero": "digit_0"}[bundle.spec.class_names[target]]
    assert bundle.val is None and len(bundle.test) == 2  # type: ignore[arg-type]


def test_a_manifest_split_column_gives_the_splits(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "images", classes=2, per_class=6, size=SIZE)
    rows = ["path,label,split"]
    for path in sorted(root.glob("*/*.png")):
        split = "test" if path.stem.endswith(("0", "1")) else "train"
        rows.append(f"images/{path.parent.name}/{path.name},{path.parent.name},{split}")
    rows.append("images/digit_0/missing.png,digit_0,train")
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(rows) + "\n")
    bundle = build(options(manifest=manifest, val_fraction=0.0, image={"on_error": "skip"}), seed=0)
    files = split_files(bundle)
    assert {p.stem[-1] for p in files["test"]} == {"0", "1"} and len(files["train"]) == 8
    assert bundle.report is not None
    assert bundle.report["skipped"] == [{"path": str(root / "digit_0" / "missing.png"),
                                         "reason": "file not found (manifest line 14)"}]


def test_the_spec_records_classes_preprocessing_and_training_counts(flat: Path) -> None:
    bundle = build(options(flat), seed=0)
    spec = bundle.spec
    assert (spec.name, spec.task, spec.num_classes, spec.class_names) == ("flat", "classification", 3, CLASSES)
    assert spec.input_shape == (3, SIZE, SIZE) and spec.input_dtype == "float32"
    assert (spec.mean, spec.std) == (IMAGENET_MEAN, IMAGENET_STD)  # the default
    assert spec.extra["preprocess"] == {"size": SIZE, "resize": "shorter_side_then_center_crop", "channels": 3,
                                        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "resize_size": None,
                                        "interpolation": "bilinear"}
    assert spec.extra["class_counts"] == [7, 7, 7]


def test_dataset_statistics_are_measured_on_the_training_split(flat: Path) -> None:
    bundle = build(options(flat, image={"mean": "dataset", "std": "dataset"}), seed=0)
    pixels = torch.stack([bundle.train.pixels(i) for i in range(len(bundle.train))]).double() / 255  # type: ignore[attr-defined]
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3), correction=0)
    assert bundle.spec.mean == pytest.approx(mean.tolist(), abs=1e-9)
    assert bundle.spec.std == pytest.approx(std.tolist(), abs=1e-9)
    x, _ = bundle.train[0]
    assert x.double().mean().abs() < 1.5  # normalized with them
    others = build(options(flat, image={"mean": [0.5], "std": [0.25]}), seed=0).spec
    assert (others.mean, others.std) == ((0.5,), (0.25,))


def test_a_strong_imbalance_is_warned_about_once_per_split(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_digits_folder(tmp_path / "i", classes=[0], per_class=24, size=SIZE)
    write_digits_folder(root, classes=[1], per_class=2, size=SIZE)
    with caplog.at_level(logging.WARNING, logger="kiln"):
        bundle = build(options(root, val_fraction=0.0, test_fraction=0.0, imbalance_warning=10), seed=0)
    expected = ("class imbalance in train: 'digit_0' has 24 images, 'digit_1' 2 (12.0x, above "
                "data.imbalance_warning=10); consider training.loss.class_weights=auto")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [expected]
    assert bundle.report is not None and bundle.report["warnings"] == [expected]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kiln"):
        build(options(root, val_fraction=0.0, test_fraction=0.0, imbalance_warning=12), seed=0)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]  # 12x is not above 12


def test_the_catalog_builds_it_from_the_config(flat: Path) -> None:
    from kiln.config import load_config

    cfg = load_config(None, ["data.name=image_folder", f"data.path={flat}", f"data.image.size={SIZE}"])
    bundle = build_data(cfg.data, seed=0)
    assert bundle.spec.class_names == CLASSES and len(bundle.train) == 21  # type: ignore[arg-type]


def test_augmentation_is_for_the_training_split_only(flat: Path) -> None:
    bundle = build(options(flat, augment=[{"name": "horizontal_flip"}]), seed=0)
    assert bundle.train.epoch_keys is True and bundle.train.augment is not None  # type: ignore[attr-defined]
    assert bundle.val.epoch_keys is False and bundle.val.augment is None  # type: ignore[union-attr]
    assert bundle.test.augment is None  # type: ignore[union-attr]


# --- the dataset and its caches --------------------------------------------------------------

PRE = Preprocessing(size=SIZE, resize="shorter_side_then_center_crop", channels=3, mean=(0.5,), std=(0.25,))


def cold(path: Path, pre: Preprocessing = PRE) -> torch.Tensor:
    """What decoding ``path`` afresh gives: the reference every cache must match."""
    return pre(open_image(path, pre.channels))


def shift(pixels: torch.Tensor, epoch: int, index: int) -> torch.Tensor:
    """A stand-in augmentation that shows which epoch and index it was called with."""
    return pixels.roll(epoch + index, dims=-1)


@pytest.fixture
def files(flat: Path) -> list[Path]:
    return sorted(flat.glob("*/*"))[:8]


def test_items_are_the_preprocessed_image_and_its_class(files: list[Path]) -> None:
    ds = ImageFolderDataset(files, [i % 3 for i in range(8)], PRE)
    assert (len(ds), ds.targets, ds.epoch_keys) == (8, [i % 3 for i in range(8)], False)
    for i, path in enumerate(files):
        x, y = ds[i]
        assert torch.equal(x, cold(path)) and y == i % 3
    assert torch.equal(ds[-1][0], ds[7][0])
    with pytest.raises(IndexError):
        ds[8]


def test_epoch_keys_reach_the_augmentation(files: list[Path]) -> None:
    ds = ImageFolderDataset(files, [0] * 8, PRE, augment=shift)
    assert ds.epoch_keys is True
    pixels = ds.pixels(5)
    assert torch.equal(ds[(2, 5)][0], PRE.normalize(pixels.roll(7, dims=-1)))
    assert torch.equal(ds[5][0], PRE.normalize(pixels.roll(5, dims=-1)))  # an index alone: epoch 0


def test_the_memory_cache_serves_what_a_cold_decode_gives_without_the_files(files: list[Path]) -> None:
    ds = ImageFolderDataset(files, [0] * 8, PRE, cache="memory")
    references = [cold(p) for p in files]
    assert all(torch.equal(ds[i][0], references[i]) for i in range(8))
    for path in files:
        path.unlink()  # from now on, only the cache can serve them
    assert all(torch.equal(ds[i][0], references[i]) for i in range(8))


def test_augmentation_still_applies_after_the_cache(files: list[Path]) -> None:
    ds = ImageFolderDataset(files, [0] * 8, PRE, augment=shift, cache="memory")
    pixels = [PRE.resized(open_image(p, 3)) for p in files]
    first = ds[(0, 3)][0]
    for path in files:
        path.unlink()
    assert torch.equal(ds[(0, 3)][0], first)
    assert torch.equal(ds[(1, 3)][0], PRE.normalize(pixels[3].roll(4, dims=-1)))  # epoch 1, index 3
    assert torch.equal(ds.pixels(3), pixels[3])  # augmenting never changed the cached pixels


def test_workers_fill_one_shared_memory_cache(files: list[Path]) -> None:
    ds = ImageFolderDataset(files, [0] * 8, PRE, cache="memory")
    references = [cold(p) for p in files]
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    assert torch.equal(torch.cat([x for x, _ in loader]), torch.stack(references))
    assert ds._memory is not None and bool(ds._memory.filled.all())  # filled by the workers, seen here
    for path in files:
        path.unlink()
    again = torch.cat([x for x, _ in DataLoader(ds, batch_size=4, num_workers=2)])
    assert torch.equal(again, torch.stack(references))  # the second epoch decoded nothing


def test_the_disk_cache_never_serves_a_changed_file_stale(files: list[Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = ImageFolderDataset(files, [0] * 8, PRE, cache="disk", cache_dir=cache)
    assert all(torch.equal(ds[i][0], cold(p)) for i, p in enumerate(files))
    entries = sorted(cache.rglob("*.u8"))
    assert len(entries) == 8 and not list(cache.rglob("*.tmp"))
    entries[0].write_bytes(bytes(len(entries[0].read_bytes())))  # all black: proves reads come from here
    served = {i: ds.pixels(i) for i in range(8)}
    assert sum(int(p.sum() == 0) for p in served.values()) == 1
    entries[0].unlink()
    Image.new("RGB", (SIZE, SIZE), (250, 10, 10)).save(files[2], format="PNG" if files[2].suffix == ".png" else "JPEG")
    assert torch.equal(ds[2][0], cold(files[2]))  # the new content, not the cached old one
    assert ds.pixels(2)[0].float().mean() > 200
    bigger = Preprocessing(size=SIZE * 2, resize="stretch", channels=3, mean=(0.5,), std=(0.25,))
    ds2 = ImageFolderDataset(files, [0] * 8, bigger, cache="disk", cache_dir=cache)
    assert ds2[2][0].shape == (3, 2 * SIZE, 2 * SIZE) and torch.equal(ds2[2][0], cold(files[2], bigger))


def test_the_datasets_cross_into_worker_processes_by_pickle(files: list[Path]) -> None:
    import pickle

    ds = ImageFolderDataset(files, [1] * 8, PRE, augment=shift, cache="none")
    ds[0]  # built what a process keeps (the preprocessing's kernels, the pixel key): still picklable
    copy = pickle.loads(pickle.dumps(ds))
    assert torch.equal(copy[(3, 1)][0], ds[(3, 1)][0]) and copy.targets == ds.targets


def test_the_resize_filter_is_saved_and_applied() -> None:
    """data.image.interpolation reaches the package (old packages read as bilinear) and the
    pixels: a bicubic resize of a sharp edge differs from a bilinear one."""
    import numpy as np
    from PIL import Image

    from kiln.data.images.preprocess import Preprocessing

    bicubic = Preprocessing(8, "stretch", 1, (0.0,), (1.0,), interpolation="bicubic")
    assert Preprocessing.from_dict(bicubic.to_dict()) == bicubic
    old = {k: v for k, v in bicubic.to_dict().items() if k != "interpolation"}
    assert Preprocessing.from_dict(old).interpolation == "bilinear"
    edge = Image.fromarray(np.repeat(np.array([[0] * 16 + [255] * 16], dtype=np.uint8), 32, axis=0))
    bilinear = Preprocessing(8, "stretch", 1, (0.0,), (1.0,))
    assert not np.array_equal(bicubic.resized(edge).numpy(), bilinear.resized(edge).numpy())


@pytest.mark.parametrize("resize", ["shorter_side_then_center_crop", "stretch", "pad"])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_preprocessing_is_bit_for_bit_its_v2_transforms(resize: str, interpolation: str, channels: int) -> None:
    """resized/normalize call v2's kernels directly (for speed): they must give exactly what
    v2.Compose(resize_steps()) and v2.Compose(normalize_steps()) give, on wide, tall, small
    and large images, one at a time and as a batch."""
    import numpy as np

    from kiln._vision import torchvision

    torchvision()  # before torchvision itself (kiln._vision: a CUDA torchvision beside a CPU torch)
    from torchvision.transforms import v2

    pre = Preprocessing(24, resize, channels, (0.485, 0.456, 0.406)[:channels], (0.229, 0.224, 0.225)[:channels],
                        resize_size=28 if resize == "shorter_side_then_center_crop" else None,
                        interpolation=interpolation)
    resize_steps, normalize_steps = v2.Compose(pre.resize_steps()), v2.Compose(pre.normalize_steps())
    rng = np.random.default_rng(0)
    pixels = []
    for height, width in [(40, 90), (90, 40), (10, 13), (24, 24), (300, 200)]:
        array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        image = Image.fromarray(array[..., 0] if channels == 1 else array)
        got = pre.resized(image)
        assert got.dtype == torch.uint8 and got.shape == pre.input_shape
        assert torch.equal(got, resize_steps(image))
        assert torch.equal(pre.normalize(got), normalize_steps(got))
        pixels.append(got)
    batch = torch.stack(pixels)
    assert torch.equal(pre.normalize(batch), normalize_steps(batch))
    floats = batch.float() / 255
    before = floats.clone()
    assert torch.equal(pre.normalize(floats), normalize_steps(before)) and torch.equal(floats, before)  # not in place


def test_a_loader_batch_is_the_items_stacked_bit_for_bit(files: list[Path]) -> None:
    """DataLoader fetches a batch through __getitems__, which normalizes the batch at once: the
    batch must equal the items one by one, stacked, with workers or without."""
    from kiln.config.augment_options import HorizontalFlip, RandomResizedCrop
    from kiln.data.images.augment import build_augment

    augment = build_augment([RandomResizedCrop(name="random_resized_crop", scale=(0.3, 1.0)),
                             HorizontalFlip(name="horizontal_flip")], seed=3)
    ds = ImageFolderDataset(files, list(range(8)), PRE, augment=augment)
    keys = [(2, i) for i in (5, 0, 7, 3, 1)]
    one_by_one = [ds[key] for key in keys]
    batch = ds.__getitems__(keys)
    assert [label for _, label in batch] == [5, 0, 7, 3, 1]
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(batch, one_by_one, strict=True))
    assert ds.__getitems__([]) == []
    expected = torch.stack([x for x, _ in one_by_one])
    for workers in (0, 2):
        (x, y), = DataLoader(ds, batch_size=5, sampler=keys, num_workers=workers)
        assert torch.equal(x, expected) and y.tolist() == [5, 0, 7, 3, 1]


def test_a_decoded_image_keeps_no_file_open(tmp_path: Path) -> None:
    """Given a path, Pillow maps uncompressed images (BMP, TIFF) and keeps the file open while
    the image lives; open_image reads them through its own file object, so the images a caller
    keeps hold no descriptor (a long eval or an API user would run out of them)."""
    import os

    import numpy as np

    paths = []
    for i, suffix in enumerate([".bmp", ".tif"] * 4):
        path = tmp_path / f"gray{i}{suffix}"
        Image.fromarray(np.full((16, 16), 10 * i, dtype=np.uint8)).save(path)
        paths.append(path)
    before = len(os.listdir("/proc/self/fd"))
    kept = [open_image(path, 1) for path in paths]
    assert len(os.listdir("/proc/self/fd")) == before
    assert [int(np.asarray(image)[0, 0]) for image in kept] == [10 * i for i in range(8)]
