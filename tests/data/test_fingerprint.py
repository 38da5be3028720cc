"""The data fingerprint: an image folder's comes from its files' sha256 (no image decoded), is the
same for the same data in any process, and changes with any file, label, split or preprocessing;
other datasets are still sampled."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from tests.counting import Counter
from torch.utils.data import Dataset

from kiln.config.image_options import ImageFolderOptions
from kiln.data.fingerprint import fingerprint
from kiln.data.images import decode
from kiln.data.images.build import build
from kiln.data.images.recorded import ImageFolderBundle
from kiln.data.spec import DataBundle, DataSpec
from kiln.testing.images import write_digits_folder

SIZE = 16


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_digits_folder(tmp_path / "photos", classes=3, per_class=6, size=SIZE, formats=("png", "jpg"))


def bundle(root: Path, **extra: Any) -> ImageFolderBundle:
    image = {"size": SIZE, **extra.pop("image", {})}
    built = build(ImageFolderOptions.model_validate({"path": root, "image": image, **extra}), seed=0)
    assert isinstance(built, ImageFolderBundle)
    return built


def digest(built: ImageFolderBundle) -> str:
    found = built.content_digest()
    assert found is not None
    return found


def test_the_same_folder_gives_the_same_fingerprint(root: Path) -> None:
    assert fingerprint(bundle(root)) == fingerprint(bundle(root))


def test_the_fingerprint_is_the_same_in_another_process(root: Path, tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from kiln.config.image_options import ImageFolderOptions; "
            "from kiln.data.images.build import build; from kiln.data.fingerprint import fingerprint; "
            "print(fingerprint(build(ImageFolderOptions.model_validate("
            f"{{'path': Path(sys.argv[1]), 'image': {{'size': {SIZE}}}}}), seed=0)))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    # The same files elsewhere (the folder's name is the dataset's name in the spec): the same data.
    moved = shutil.copytree(root, tmp_path / "elsewhere" / root.name)
    done = subprocess.run([sys.executable, "-c", code, str(moved)], capture_output=True, text=True,
                          env=env, timeout=300, check=True)
    assert done.stdout.strip() == fingerprint(bundle(root))


def test_fingerprinting_an_image_folder_decodes_nothing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = bundle(root, augment=[{"name": "horizontal_flip"}])
    decodes = Counter(decode.open_image)
    monkeypatch.setattr(decode, "open_image", decodes)
    fingerprint(built)
    assert decodes.calls == 0
    built.train[0]  # the counter does see a decode when there is one
    assert decodes.calls == 1


def test_one_changed_file_changes_it(root: Path) -> None:
    before = bundle(root)
    photo = sorted((root / "digit_2").glob("*.png"))[0]
    pixels = Image.open(photo).convert("RGB")
    pixels.putpixel((0, 0), (1, 2, 3))
    out = io.BytesIO()
    pixels.save(out, "PNG")
    photo.write_bytes(out.getvalue())
    after = bundle(root)
    assert digest(after) != digest(before) and fingerprint(after) != fingerprint(before)


def test_a_label_moved_changes_it(root: Path) -> None:
    before = bundle(root)
    photo = sorted((root / "digit_2").glob("*.png"))[0]
    photo.rename(root / "digit_1" / photo.name)
    after = bundle(root)
    assert digest(after) != digest(before) and fingerprint(after) != fingerprint(before)


def test_a_label_changed_in_a_manifest_changes_it(root: Path) -> None:
    manifest = root / "labels.csv"

    def labelled(first: str) -> ImageFolderBundle:
        rows = [f"{p.relative_to(root).as_posix()},{p.parent.name}" for p in sorted(root.rglob("*.png"))]
        rows[0] = f"{rows[0].split(',')[0]},{first}"  # the same file, another label
        manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
        built = build(ImageFolderOptions.model_validate({"manifest": manifest, "image": {"size": SIZE},
                                                          "val_fraction": 0, "test_fraction": 0}), seed=0)
        assert isinstance(built, ImageFolderBundle)
        return built

    before, after = labelled("digit_0"), labelled("digit_1")
    assert digest(after) != digest(before) and fingerprint(after) != fingerprint(before)


@pytest.mark.parametrize("change", [
    {"image": {"size": SIZE * 2}},
    {"image": {"resize": "pad"}},
    {"val_fraction": 0.3},
    {"augment": [{"name": "horizontal_flip"}]},
])
def test_preprocessing_splits_and_augmentation_change_it(root: Path, change: dict[str, Any]) -> None:
    before, after = bundle(root), bundle(root, **change)
    assert digest(after) != digest(before)  # the content digest alone, whatever the spec says
    assert fingerprint(after) != fingerprint(before)


class Items(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __len__(self) -> int:
        return 600

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.full((2,), index + self.offset), index % 2


def test_other_datasets_are_still_sampled() -> None:
    spec = DataSpec("items", "classification", (2,), 2, ("a", "b"))

    def of(offset: float) -> str:
        return fingerprint(DataBundle(Items(offset), None, None, spec))

    assert of(0.0) == of(0.0) and of(0.0) != of(0.5)


def test_new_decoding_rules_change_it(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoders' versions and kiln's decoding rules change the pixels of the same files, so
    they change the fingerprint (as they change the disk cache's key)."""
    from kiln.data.images import dataset

    before = digest(bundle(root))
    monkeypatch.setattr(dataset, "DECODE_RULES", dataset.DECODE_RULES + 1)
    assert digest(bundle(root)) != before
