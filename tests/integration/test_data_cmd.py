"""``kiln data check`` as a user runs it (a real ``python -m kiln`` process): a per-class table and
exit 0 on a clean folder; every problem with its file and reason and exit 2, without a traceback,
on a bad one; and ``kiln train`` stopping on the same folder before training, with the same list."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.testing.images import write_digits_folder
from tests.conftest import run_cli

SIZE = 16


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_digits_folder(tmp_path / "photos", classes=2, per_class=10, size=SIZE, formats=("png", "jpg"))


def check(root: Path, *overrides: str) -> tuple[int, str]:
    done = run_cli("data", "check", "data.name=image_folder", f"data.path={root}", f"data.image.size={SIZE}",
                   *overrides, cwd=root.parent)
    return done.returncode, done.stdout + done.stderr


def test_a_clean_folder_gets_its_table_and_exit_0(root: Path) -> None:
    (root / ".DS_Store").write_bytes(b"x")
    code, output = check(root)
    assert code == 0, output
    lines = [" ".join(line.replace("│", " ").replace("┃", " ").split()) for line in output.splitlines()]
    assert "class train (carved) val (carved) test (carved)" in lines  # one column per split
    assert "digit_0 7 1 2" in lines and "digit_1 7 1 2" in lines and "total 14 2 4" in lines
    assert f"  - {root / '.DS_Store'}: hidden file" in output  # listed, no problem
    assert "ok: training would start" in output


def test_a_bad_folder_lists_every_file_and_reason_and_exits_2(root: Path) -> None:
    (root / "digit_0" / "zero.png").write_bytes(b"")
    (root / "digit_1" / "words.jpg").write_text("not a picture")
    code, output = check(root)
    assert code == 2, output
    assert f"  - {root / 'digit_0' / 'zero.png'}: empty file (0 bytes)" in output
    assert f"  - {root / 'digit_1' / 'words.jpg'}: not an image file Pillow can read" in output
    assert "training would stop (data.image.on_error=stop)" in output
    assert "Traceback" not in output
    code, output = check(root, "data.image.on_error=skip")  # skipping them, training would start
    assert code == 0 and "2 left out (data.image.on_error=skip):" in output and "zero.png" in output


def test_train_stops_before_training_on_a_bad_folder(root: Path, tmp_path: Path) -> None:
    (root / "digit_1" / "words.jpg").write_text("not a picture")
    done = run_cli("train", "data.name=image_folder", f"data.path={root}", f"data.image.size={SIZE}",
                   "model.name=cnn", f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[jsonl]", "--quiet",
                   cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"  - {root / 'digit_1' / 'words.jpg'}: not an image file Pillow can read" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()


def test_check_refuses_a_dataset_that_is_no_image_folder(tmp_path: Path) -> None:
    done = run_cli("data", "check", cwd=tmp_path)
    assert done.returncode == 2
    assert "kiln data check works on image folders; this config's data.name is 'digits'" in done.stderr


def test_preview_writes_a_png_grid_of_training_samples(root: Path, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "grid.png"
    done = run_cli("data", "preview", "data.name=image_folder", f"data.path={root}", f"data.image.size={SIZE}",
                   "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 4 * SIZE


def test_a_second_check_of_an_unchanged_folder_says_it_read_nothing_again(root: Path) -> None:
    """The scan keeps each file's verdict ($XDG_CACHE_HOME/kiln/scans): the second check says how
    many files were unchanged. A file written in the last 2 s is never kept (scan_cache.SETTLE_NS)."""
    import time

    time.sleep(2.1)  # let the files settle, so that the first check may keep their verdicts
    first, again = check(root), check(root)
    assert first[0] == again[0] == 0, first[1] + again[1]
    first_text, again_text = " ".join(first[1].split()), " ".join(again[1].split())  # the title may wrap
    assert "20 files checked" in first_text and "unchanged" not in first_text
    assert "20 files checked (20 unchanged since the last scan)" in again_text
