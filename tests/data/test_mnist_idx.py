"""The IDX reader and writer, and MNIST/Fashion-MNIST built from small generated files."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kiln.config.data_options import FashionMnistOptions, MnistOptions
from kiln.data import mnist
from kiln.data.mnist import (
    FILES,
    MNIST,
    Source,
    build_fashion_mnist,
    build_mnist,
    read_idx,
    write_idx,
)
from kiln.errors import DataError


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path: Path, suffix: str, dtype: type) -> None:
    array: np.ndarray[Any, Any] = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable  # torch.from_numpy warns on read-only arrays


def test_idx_reader_detects_gzip_from_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"  # gzipped, but named without .gz
    path.write_bytes(gzip.compress(b"\0\0\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02\x03"))
    assert read_idx(path).tolist() == [1, 2, 3]


def test_idx_header_is_big_endian(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", np.array([1, 256], dtype=np.int32))
    assert (tmp_path / "x").read_bytes() == b"\0\0\x0c\x01" + bytes(
        [0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 0]
    )


def test_bad_magic_number_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, world")
    with pytest.raises(DataError, match=r"notes\.txt is not an IDX file"):
        read_idx(path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_file_is_a_data_error_naming_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    write_idx(path, np.zeros((10, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=f"train-images-idx3-ubyte{suffix}"):
        read_idx(path)


def test_trailing_bytes_are_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    write_idx(path, np.zeros(4, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(
        DataError, match=r"header promises shape \[4\] \(12 bytes\) but it holds 13"
    ):
        read_idx(path)


def _write_dataset(directory: Path, n_train: int = 40, n_test: int = 10, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    sizes = (n_train, n_train, n_test, n_test)
    for stem, n in zip(FILES, sizes, strict=True):
        if "images" in stem:
            array = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        else:
            array = (np.arange(n) % 10).astype(np.uint8)
        write_idx(directory / f"{stem}{suffix}", array)


@pytest.mark.parametrize("gz", [True, False])
def test_build_mnist_reads_the_four_files(tmp_path: Path, gz: bool) -> None:
    _write_dataset(tmp_path, gz=gz)
    bundle = build_mnist(MnistOptions(path=tmp_path, val_fraction=0.25), seed=0)
    assert bundle.spec.input_shape == (1, 28, 28) and bundle.spec.class_names == tuple("0123456789")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (30, 10, 10)  # type: ignore[arg-type]
    x, y = bundle.test[0]  # type: ignore[index]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    raw_first = read_idx(tmp_path / f"{FILES[2]}{'.gz' if gz else ''}")[0]
    mean, std = bundle.spec.mean[0], bundle.spec.std[0]
    assert torch.allclose(x[0], (torch.from_numpy(raw_first).float() / 255 - mean) / std, atol=1e-5)


def test_fashion_mnist_names_its_classes(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    bundle = build_fashion_mnist(FashionMnistOptions(path=tmp_path), seed=0)
    assert len(bundle.spec.class_names) == 10
    assert (
        bundle.spec.class_names[0] == "T-shirt/top" and bundle.spec.class_names[9] == "Ankle boot"
    )


def test_missing_files_name_the_directory_the_files_and_the_fix(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        build_mnist(MnistOptions(path=tmp_path), seed=0)
    message = str(info.value)
    assert str(tmp_path) in message and "data.download=true" in message
    assert message.startswith("mnist: t10k-labels-idx1-ubyte not found")
    assert all(stem in message for stem in FILES)


def test_unset_path_says_to_set_data_path() -> None:
    with pytest.raises(DataError, match=r"set data\.path="):
        build_mnist(MnistOptions(), seed=0)


def test_labels_out_of_range_or_mismatched_are_data_errors(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10, 12, dtype=np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz holds labels outside 0\.\.9"):
        build_mnist(MnistOptions(path=tmp_path), seed=0)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(9, dtype=np.uint8))
    with pytest.raises(DataError, match=r"one label per image .* \(10\); got shape \[9\]"):
        build_mnist(MnistOptions(path=tmp_path), seed=0)


def _mirror(tmp_path: Path, md5: dict[str, str] | None = None) -> Source:
    """MNIST served from a local directory via file:// URLs, after a mirror that does not exist."""
    served = tmp_path / "mirror"
    served.mkdir()
    _write_dataset(served)
    checksums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in served.iterdir()}
    missing = (tmp_path / "nowhere").as_uri() + "/"
    return replace(MNIST, mirrors=(missing, served.as_uri() + "/"), md5=md5 or checksums)


def test_download_falls_back_to_the_next_mirror_and_renames_complete_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mnist, "MNIST", _mirror(tmp_path))
    target = tmp_path / "data"
    bundle = build_mnist(MnistOptions(path=target, download=True), seed=0)
    assert len(bundle.test) == 10  # type: ignore[arg-type]
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{stem}.gz" for stem in FILES)


def test_download_with_a_wrong_checksum_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = dict.fromkeys((f"{stem}.gz" for stem in FILES), "0" * 32)
    monkeypatch.setattr(mnist, "MNIST", _mirror(tmp_path, md5=wrong))
    target = tmp_path / "data"
    with pytest.raises(DataError, match=r"could not download train-images.*does not match"):
        build_mnist(MnistOptions(path=target, download=True), seed=0)
    assert list(target.iterdir()) == []  # no .part file, no unverified file
