"""The scan before training, on real files: every bad-file case gives its documented result under
both ``data.image.on_error`` settings, odd but valid images are read as the model's channels, and
hidden files are listed without stopping anything."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kiln.config.image_options import ImageFolderOptions
from kiln.data.images.build import build
from kiln.data.images.dataset import ImageFolderDataset
from kiln.data.images.preprocess import Preprocessing
from kiln.data.images.scan import ScanError, scan
from kiln.errors import ConfigError, PathError
from kiln.testing.images import write_digits_folder

SIZE = 16


def options(root: Path, on_error: str = "stop", **extra: object) -> ImageFolderOptions:
    return ImageFolderOptions.model_validate(
        {"path": root, "image": {"size": SIZE, "on_error": on_error}, **extra})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Three classes of six real PNG/JPEG digits each."""
    return write_digits_folder(tmp_path / "photos", classes=3, per_class=6, size=SIZE, formats=("png", "jpg"))


def jpeg_bytes(size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# name -> (what to write, the reason the scan must give)
BAD_FILES = {
    "truncated.jpg": (jpeg_bytes()[:300], "unreadable image"),
    "zero.png": (b"", "empty file (0 bytes)"),
    "text.jpg": (b"just some words, not a picture\n", "not an image file Pillow can read"),
    "notes.txt": (b"a text file in a class folder\n", "not an image file (extension '.txt'"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_file_stops_training_with_its_path_and_reason(root: Path, name: str) -> None:
    content, reason = BAD_FILES[name]
    bad = root / "digit_1" / name
    bad.write_bytes(content)
    with pytest.raises(ScanError) as caught:
        build(options(root), seed=0)
    message = str(caught.value)
    assert f"{bad}: {reason}" in message, message
    assert "1 problem found before training" in message and "on_error=skip" in message
    assert caught.value.exit_code == 2  # the CLI's exit code for data the user must fix


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_skip_trains_without_the_bad_file_and_reports_it(root: Path, name: str) -> None:
    content, reason = BAD_FILES[name]
    bad = root / "digit_1" / name
    bad.write_bytes(content)
    bundle = build(options(root, "skip"), seed=0)
    used = [p for split in (bundle.train, bundle.val, bundle.test) for p in split.files]  # type: ignore[union-attr]
    assert bad not in used and len(used) == 18  # every good file is still there
    assert bundle.report is not None
    [skipped] = bundle.report["skipped"]
    assert skipped["path"] == str(bad) and skipped["reason"].startswith(reason)


def test_hidden_and_os_files_are_listed_and_never_stop(root: Path) -> None:
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "digit_0" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "digit_2" / "._0_0000.png").write_bytes(b"AppleDouble")
    (root / "digit_2" / ".cache").mkdir()
    (root / "digit_2" / ".cache" / "x.png").write_bytes(b"")  # inside a hidden folder: never read
    (root / "__MACOSX").mkdir()
    bundle = build(options(root), seed=0)  # on_error: stop, and still no stop
    assert bundle.report is not None
    ignored = {Path(e["path"]).name: e["reason"] for e in bundle.report["ignored"]}
    assert ignored == {".DS_Store": "hidden file", "Thumbs.db": "operating system file",
                       "._0_0000.png": "hidden file", ".cache": "hidden folder",
                       "__MACOSX": "operating system folder"}
    assert bundle.report["skipped"] == [] and bundle.spec.class_names == ("digit_0", "digit_1", "digit_2")


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_an_empty_class_folder_stops_in_both_modes(root: Path, on_error: str) -> None:
    (root / "digit_9").mkdir()
    (root / "digit_9" / ".DS_Store").write_bytes(b"x")  # hidden files do not make it a class
    with pytest.raises(ScanError, match=r"digit_9: empty class folder"):
        build(options(root, on_error), seed=0)


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_class_whose_files_are_all_bad_stops_in_both_modes(root: Path, on_error: str) -> None:
    (root / "digit_9").mkdir()
    (root / "digit_9" / "a.png").write_bytes(b"")
    with pytest.raises(ScanError, match=r"class 'digit_9' has no usable images"):
        build(options(root, on_error), seed=0)


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_single_class_stops_in_both_modes(tmp_path: Path, on_error: str) -> None:
    root = write_digits_folder(tmp_path / "one", classes=[4], per_class=6, size=SIZE)
    with pytest.raises(ScanError, match=r"only one class \('digit_4'\); classification needs at least two"):
        build(options(root, on_error), seed=0)


def test_a_copy_across_given_splits_is_a_leak(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "s", classes=2, per_class=10, size=SIZE, layout="splits")
    original = sorted((root / "train" / "digit_0").iterdir())[0]
    copy = root / "test" / "digit_0" / "copied.png"
    shutil.copy(original, copy)
    with pytest.raises(ScanError) as caught:
        build(options(root), seed=0)
    assert f"{copy}: same content as {original} in train: a leak of train images into test" in str(caught.value)
    bundle = build(options(root, "skip"), seed=0)  # skip drops the later split's copy
    assert original in bundle.train.files and copy not in bundle.test.files  # type: ignore[union-attr]
    assert bundle.report is not None and [e["path"] for e in bundle.report["skipped"]] == [str(copy)]


def test_a_copy_in_a_folder_to_be_carved_is_a_leak_and_skip_keeps_the_first(root: Path) -> None:
    original = root / "digit_0" / "0_0000.png"
    copy = root / "digit_0" / "z_copy.png"
    shutil.copy(original, copy)
    with pytest.raises(ScanError, match="could be carved into different splits"):
        build(options(root), seed=0)
    bundle = build(options(root, "skip"), seed=0)
    used = [p for split in (bundle.train, bundle.val, bundle.test) for p in split.files]  # type: ignore[union-attr]
    assert original in used and copy not in used


def test_a_copy_under_another_class_is_a_problem(root: Path) -> None:
    shutil.copy(root / "digit_0" / "0_0000.png", root / "digit_2" / "dup.png")
    with pytest.raises(ScanError, match=r"dup.png: same content as .*0_0000.png, which is labelled 'digit_0'"):
        build(options(root), seed=0)


def test_every_problem_is_listed_at_once(root: Path) -> None:
    for name in ("truncated.jpg", "zero.png", "text.jpg"):
        (root / "digit_0" / name).write_bytes(BAD_FILES[name][0])
    (root / "digit_7").mkdir()
    with pytest.raises(ScanError) as caught:
        build(options(root), seed=0)
    assert [Path(i.path).name for i in caught.value.issues] == ["digit_7", "text.jpg", "truncated.jpg", "zero.png"]
    assert "4 problems found before training" in str(caught.value)


def test_a_folder_beside_train_that_is_no_split_stops(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "s", classes=2, per_class=10, size=SIZE, layout="splits")
    (root / "extra").mkdir()
    with pytest.raises(ScanError, match=r"extra: a folder beside the train folder that is not a split: allowed: val"):
        build(options(root), seed=0)
    (root / "extra").rmdir()
    (root / "validation").mkdir()  # beside val/: two validation folders
    with pytest.raises(ScanError, match=r"validation: a second val folder beside val/"):
        build(options(root), seed=0)


def test_split_folders_are_recognised_however_they_are_spelt(tmp_path: Path) -> None:
    """Train/Valid/Test (or training/validation/testing) are the split layout: taken as classes,
    every image would be labelled by its split."""
    root = write_digits_folder(tmp_path / "s", classes=2, per_class=10, size=SIZE, layout="splits")
    plain = build(options(root), seed=0)
    for old, new in (("train", "Train"), ("val", "validation"), ("test", "Testing")):
        (root / old).rename(root / new)
    spelt = build(options(root), seed=0)
    assert spelt.spec.class_names == plain.spec.class_names == ("digit_0", "digit_1")
    assert [len(s) for s in (spelt.train, spelt.val, spelt.test)] == [len(s) for s in (plain.train, plain.val, plain.test)]


def test_images_without_class_folders_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "loose"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg_bytes())
    with pytest.raises(ScanError, match=r"no class folders \(it holds 1 images directly\)"):
        build(options(root), seed=0)


def test_a_missing_folder_and_no_folder_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="does not exist") as caught:
        scan(options(tmp_path / "nowhere"))
    assert caught.value.exit_code == 2
    with pytest.raises(ConfigError, match="needs your images"):
        scan(ImageFolderOptions())


# --- odd but valid images: read, converted to the model's channels ---------------------------


def write_odd_images(folder: Path) -> dict[str, Path]:
    """One file of each odd kind the issue names, written by Pillow; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}

    def save(name: str, image: Image.Image, **kwargs: object) -> None:
        paths[name] = folder / name
        image.save(paths[name], **kwargs)

    save("cmyk.jpg", Image.new("CMYK", (20, 20), (0, 255, 255, 0)))  # pure red in CMYK
    gray16 = np.full((20, 20), 65535, dtype=np.uint16)
    gray16[:, :10] = 0
    save("gray16.png", Image.fromarray(gray16))
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black, 1 blue
    palette.paste(0, (0, 0, 20, 10))  # the top half transparent
    save("palette.gif", palette, transparency=0)
    rgba = Image.new("RGBA", (20, 20), (0, 255, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 20, 10))  # the top half fully transparent
    save("rgba.png", rgba)
    save("photo.webp", Image.new("RGB", (20, 20), (10, 200, 30)), lossless=True)
    rotated = Image.new("RGB", (32, 16), (255, 255, 255))  # wide as stored, tall as shown
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save("exif6.jpg", rotated, exif=exif, quality=95)
    return paths


def test_odd_images_pass_the_scan_and_become_the_models_channels(root: Path) -> None:
    odd = write_odd_images(root / "digit_0")
    result = scan(options(root))
    assert result.bad == [] and result.fatal == []
    assert set(odd.values()) <= {f.path for f in result.files}
    pre = Preprocessing(size=20, resize="stretch", channels=3, mean=(0.0,), std=(1.0,))
    ds = ImageFolderDataset(list(odd.values()), [0] * len(odd), pre)
    pixels = {name: ds.pixels(i) for i, name in enumerate(odd)}
    assert all(p.shape == (3, 20, 20) and p.dtype == torch.uint8 for p in pixels.values())
    red = pixels["cmyk.jpg"][:, 10, 10].tolist()
    assert red[0] > 240 and red[1] < 15 and red[2] < 15, red  # CMYK converted, not read as RGB
    assert pixels["gray16.png"][:, 10, 2].tolist() == [0, 0, 0]  # 16-bit black stays black
    assert pixels["gray16.png"][:, 10, 17].tolist() == [255, 255, 255]  # 65535 is white, not clipped junk
    assert pixels["palette.gif"][:, 2, 10].tolist() == [255, 255, 255]  # transparent on white
    assert pixels["palette.gif"][:, 17, 10].tolist() == [0, 0, 255]
    assert pixels["rgba.png"][:, 2, 10].tolist() == [255, 255, 255]
    assert pixels["rgba.png"][:, 17, 10].tolist() == [0, 255, 0]
    assert pixels["photo.webp"][:, 10, 10].tolist() == [10, 200, 30]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = write_odd_images(tmp_path / "odd")["exif6.jpg"]
    from kiln.data.images.decode import open_image

    assert open_image(path, 3).size == (16, 32)  # 32 wide x 16 tall on disk, shown 16 x 32
    # "pad" keeps the whole image: a tall image gets its borders left and right, not top and bottom
    pre = Preprocessing(size=32, resize="pad", channels=3, mean=(0.0,), std=(1.0,))
    pixels = ImageFolderDataset([path], [0], pre).pixels(0)
    assert pixels[:, 16, 1].tolist() == [0, 0, 0] and pixels[:, 16, 30].tolist() == [0, 0, 0]
    assert pixels[:, 1, 16].tolist() != [0, 0, 0] and pixels[:, 30, 16].tolist() != [0, 0, 0]


def test_grayscale_channels_read_colour_files_as_one_channel(root: Path) -> None:
    bundle = build(options(root, image={"size": SIZE, "channels": 1}), seed=0)
    x, _ = bundle.train[0]
    assert x.shape == (1, SIZE, SIZE) and bundle.spec.input_shape == (1, SIZE, SIZE)
    assert len(bundle.spec.mean) == 1  # ImageNet's statistics averaged for one channel


def test_a_class_too_small_to_carve_stops_with_its_name(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "small", classes=[0], per_class=6, size=SIZE)
    write_digits_folder(root, classes=[1], per_class=1, size=SIZE)
    with pytest.raises(ScanError) as caught:
        build(options(root), seed=0)
    assert "class 'digit_1': 1 image(s) left to carve from: too few for a test split (data.test_fraction=0.15)" \
        in str(caught.value)
    assert caught.value.exit_code == 2 and "data.test_fraction=0 for no test split" in str(caught.value)
    build(options(root, val_fraction=0.0, test_fraction=0.0), seed=0)  # nothing to carve: fine


def test_a_manifest_row_listed_twice_is_named_as_such(tmp_path: Path) -> None:
    root = write_digits_folder(tmp_path / "images", classes=2, per_class=4, size=SIZE)
    rows = ["path,label,split"] + [f"images/{p.parent.name}/{p.name},{p.parent.name},TRAIN"
                                   for p in sorted(root.glob("*/*.png"))]
    rows.append(rows[1].replace("TRAIN", "test"))
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(rows) + "\n")
    result = scan(ImageFolderOptions.model_validate({"manifest": manifest, "image": {"size": SIZE}}))
    first = root / "digit_0" / "0_0000.png"
    assert [str(i) for i in result.bad] == [f"{first}: listed more than once in the manifest"]
    assert len(result.files) == 8 and {f.split for f in result.files} == {"train"}  # split names: any case
