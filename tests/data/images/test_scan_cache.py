"""The scan cache, on real files: a second scan of an unchanged folder reads and decodes no image,
any change (a rewrite of the same size, a new file, a replaced bad file) is read again, and a
broken, unwritable or raced cache is never an error.

Reads are counted by wrapping the real ``kiln.data.images.scan._read`` (every read of an image's
bytes) and the real ``open_image`` (every decode), so a test fails if the cache is bypassed.
Most tests let files settle at once (``SETTLE_NS = 0``): the scan does not trust a file changed
in the last two seconds, and one test holds that rule with its real value.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.counting import Counter

from kiln.config.image_options import ImageFolderOptions
from kiln.data.images import decode, scan_cache
from kiln.data.images import scan as scan_module
from kiln.data.images.scan import ScanResult, scan
from kiln.testing.images import write_digits_folder

SIZE = 16
FILES = 18  # write_digits_folder: 3 classes of 6


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "kiln" / "scans"


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_cache, "SETTLE_NS", 0)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counter = Counter(scan_module._read)
    monkeypatch.setattr(scan_module, "_read", counter)
    return counter


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counter = Counter(decode.open_image)
    monkeypatch.setattr(decode, "open_image", counter)
    return counter


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_digits_folder(tmp_path / "photos", classes=3, per_class=6, size=SIZE, formats=("png", "jpg"))


def options(root: Path, on_error: str = "stop") -> ImageFolderOptions:
    return ImageFolderOptions.model_validate({"path": root, "image": {"size": SIZE, "on_error": on_error}})


def verdicts(result: ScanResult) -> tuple[list[tuple[str, str]], list[str]]:
    return [(str(f.path), f.sha256) for f in result.files], [str(i) for i in result.bad]


def bmp(colour: tuple[int, int, int]) -> bytes:
    """An uncompressed image: its size depends on its dimensions only, never on its pixels."""
    out = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), colour).save(out, "BMP")
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 90)).save(out, "JPEG", quality=90)
    return out.getvalue()


def after_a_tick(path: Path) -> None:
    """Wait until a write now would give ``path`` another ctime (file times tick coarsely), so a
    test's rewrite cannot keep the stat it had by luck (what SETTLE_NS guards against in use)."""
    probe = path.with_name(".tick")
    probe.write_bytes(b"")
    while os.stat(probe).st_ctime_ns <= os.stat(path).st_ctime_ns:
        probe.write_bytes(b"")
    probe.unlink()


def cache_files(cache_home: Path) -> list[Path]:
    return sorted(cache_home.glob("*.json"))


@pytest.mark.usefixtures("settled")
def test_a_second_scan_of_an_unchanged_folder_reads_no_image(root: Path, reads: Counter, decodes: Counter) -> None:
    first = scan(options(root))
    assert (reads.calls, decodes.calls, first.reused) == (FILES, FILES, 0)
    second = scan(options(root))
    assert (reads.calls, decodes.calls) == (FILES, FILES)  # nothing read or decoded the second time
    assert (second.scanned, second.reused) == (FILES, FILES)
    assert verdicts(second) == verdicts(first) and second.class_names == first.class_names


@pytest.mark.usefixtures("settled")
def test_the_cache_is_shared_across_working_directories_and_symlinks(
        root: Path, tmp_path: Path, reads: Counter, monkeypatch: pytest.MonkeyPatch) -> None:
    scan(options(root))
    link = tmp_path / "link"
    link.symlink_to(root)
    monkeypatch.chdir(tmp_path)
    scan(options(Path("link")))  # another spelling of the same folder: its files by the same names
    assert reads.calls == FILES


def test_a_file_changed_in_the_last_two_seconds_is_read_again(root: Path, cache_home: Path, reads: Counter) -> None:
    # The real SETTLE_NS: these files were just written, so a same-size rewrite in the same tick
    # of the file clock could keep its stat; the scan reads them again rather than trust it.
    scan(options(root))
    scan(options(root))
    assert reads.calls == 2 * FILES
    assert not cache_files(cache_home)  # nothing settled yet: nothing worth writing


@pytest.mark.usefixtures("settled")
def test_a_file_rewritten_with_the_same_size_is_read_again(root: Path, reads: Counter) -> None:
    photo = root / "digit_1" / "red.bmp"
    photo.write_bytes(bmp((255, 0, 0)))
    scan(options(root))
    after_a_tick(photo)
    blue = bmp((0, 0, 255))
    size = photo.stat().st_size
    with photo.open("r+b") as f:  # in place: same inode, same size
        f.write(blue)
    assert photo.stat().st_size == size == len(blue)
    result = scan(options(root))
    assert reads.calls == (FILES + 1) + 1  # the first scan's, then the rewritten file alone
    assert {f.path: f.sha256 for f in result.files}[photo] == hashlib.sha256(blue).hexdigest()


@pytest.mark.usefixtures("settled")
def test_a_bad_file_stays_bad_from_the_cache_until_it_is_replaced(root: Path, reads: Counter) -> None:
    broken = root / "digit_2" / "truncated.jpg"
    broken.write_bytes(jpeg()[:300])
    first = scan(options(root, "skip"))
    [issue] = first.bad
    assert issue.path == str(broken) and issue.reason.startswith("unreadable image")
    second = scan(options(root, "skip"))
    assert reads.calls == FILES + 1  # the bad verdict came from the cache too
    assert second.bad == first.bad and broken not in {f.path for f in second.files}
    after_a_tick(broken)
    broken.write_bytes(jpeg())
    third = scan(options(root, "skip"))
    assert reads.calls == FILES + 2
    assert not third.bad and broken in {f.path for f in third.files}


@pytest.mark.usefixtures("settled")
def test_a_new_file_is_read_and_a_removed_one_dropped_from_the_cache(root: Path, cache_home: Path,
                                                                     reads: Counter) -> None:
    scan(options(root))
    added = root / "digit_0" / "added.bmp"
    added.write_bytes(bmp((0, 255, 0)))
    removed = sorted((root / "digit_1").iterdir())[0]
    removed.unlink()
    result = scan(options(root))
    assert reads.calls == FILES + 1 and added in {f.path for f in result.files}
    [file] = cache_files(cache_home)
    names = set(json.loads(file.read_text())["files"])
    assert "digit_0/added.bmp" in names and removed.relative_to(root).as_posix() not in names
    assert len(names) == FILES


@pytest.mark.usefixtures("settled")
def test_a_manifest_names_its_files_relative_to_its_folder(tmp_path: Path, reads: Counter) -> None:
    root = write_digits_folder(tmp_path / "photos", classes=2, per_class=3, size=SIZE)
    outside = tmp_path / "elsewhere.bmp"
    outside.write_bytes(bmp((9, 9, 9)))
    rows = [f"{p.relative_to(root).as_posix()},{p.parent.name}" for p in sorted(root.rglob("*.png"))]
    manifest = root / "labels.csv"
    manifest.write_text("path,label\n" + "\n".join([*rows, "../elsewhere.bmp,digit_0"]) + "\n")
    given = ImageFolderOptions.model_validate({"manifest": manifest, "image": {"size": SIZE}})
    first = scan(given)
    second = scan(given)
    assert reads.calls == 7 and second.reused == 7 and verdicts(second) == verdicts(first)


BROKEN = {
    "not json": b"{\"schema\": 1, \"files\": {",
    "empty": b"",
    "not utf-8": b"\xff\xfe\x00garbage",
    "a list": b"[1, 2, 3]",
    "another decoding": None,  # the header of another Pillow version
    "malformed entries": None,  # every entry of the wrong shape
}


@pytest.mark.usefixtures("settled")
@pytest.mark.parametrize("damage", list(BROKEN))
def test_a_broken_cache_file_is_ignored(root: Path, cache_home: Path, reads: Counter, damage: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    first = scan(options(root))
    [file] = cache_files(cache_home)
    content = json.loads(file.read_text())
    if damage == "another decoding":
        file.write_text(json.dumps({**content, "pillow": "0.0"}))
    elif damage == "malformed entries":
        file.write_text(json.dumps({**content, "files": {k: [*v[:4], 7, None] for k, v in content["files"].items()}}))
    else:
        file.write_bytes(BROKEN[damage] or b"")
    with caplog.at_level(logging.DEBUG, logger="kiln"):
        second = scan(options(root))
    assert reads.calls == 2 * FILES  # every file read again, no error
    assert verdicts(second) == verdicts(first)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert json.loads(file.read_text())["files"] == content["files"]  # written whole again
    scan(options(root))
    assert reads.calls == 2 * FILES


@pytest.mark.usefixtures("settled")
def test_an_unwritable_cache_folder_is_one_warning_and_the_scan_goes_on(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("XDG_CACHE_HOME points at a file: no folder can be made under it\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with caplog.at_level(logging.INFO, logger="kiln"):
        result = scan(options(root))
    assert len(result.files) == FILES and not result.bad
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot write the scan cache" in warnings[0], warnings
    assert "\n" not in warnings[0]


@pytest.mark.usefixtures("settled")
def test_scans_racing_each_other_leave_a_whole_cache(root: Path, cache_home: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    errors: list[BaseException] = []

    def one_scan() -> None:
        try:
            scan(options(root))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger="kiln"):
        for round_ in range(4):  # each round changes the folder, so every scan writes the cache
            (root / "digit_0" / f"round_{round_}.bmp").write_bytes(bmp((round_, 0, 0)))
            threads = [threading.Thread(target=one_scan) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    assert not errors, errors
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    [file] = cache_files(cache_home)
    assert len(json.loads(file.read_text())["files"]) == FILES + 4
    assert not [p for p in cache_home.iterdir() if p.suffix == ".tmp"]  # no temporary file left behind


@pytest.mark.usefixtures("settled")
def test_without_any_cache_folder_the_scan_reads_everything_and_warns(
        root: Path, reads: Counter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """No $XDG_CACHE_HOME and no home directory (a container run as a user id with no passwd
    entry, where pathlib raises RuntimeError): one warning, and every scan reads every file."""
    from kiln.errors import ConfigError

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with caplog.at_level(logging.WARNING, logger="kiln"):
        first, second = scan(options(root)), scan(options(root))
    assert (reads.calls, second.reused, len(first.files)) == (2 * FILES, 0, FILES)
    assert "no folder for kiln's caches" in caplog.text and "XDG_CACHE_HOME" in caplog.text
    from kiln.data.images.dataset import ImageFolderDataset
    from kiln.data.images.preprocess import Preprocessing

    with pytest.raises(ConfigError, match="no home directory"):  # a disk cache has nowhere to go: said so
        ImageFolderDataset([], [], Preprocessing(8, "stretch", 3, (0.5,), (0.5,)), cache="disk")


@pytest.mark.usefixtures("settled")
def test_running_out_of_memory_is_not_kept_as_the_files_verdict(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A MemoryError while decoding says nothing about the file: the scan reports it, but the
    next scan reads the file again (and finds it good) instead of a kept "bad file"."""
    real = decode.open_image
    victim = sorted(root.rglob("*.png"))[0]

    def short_of_memory(source: Any, channels: int) -> Any:
        if isinstance(source, bytes) and source == victim.read_bytes():
            raise MemoryError
        return real(source, channels)

    monkeypatch.setattr(decode, "open_image", short_of_memory)
    first = scan(options(root, on_error="skip"))
    assert [(i.path, i.reason) for i in first.bad] == [(str(victim), "cannot read the file: out of memory while decoding it")]
    monkeypatch.setattr(decode, "open_image", real)
    again = scan(options(root))
    assert not again.bad and len(again.files) == FILES and again.reused == FILES - 1
