"""MNIST and Fashion-MNIST, read from the four standard IDX files in ``data.path``.

The files (each may be gzipped, ending in ``.gz``) are the ones every mirror serves; the ``t10k``
pair is the test split. With ``data.download=true`` missing files are fetched from public mirrors,
checked against their published MD5 and renamed into place only once complete, so an interrupted
download never leaves a file that looks valid.

``data.augment`` applies to the training split: its ``uint8`` pixels are augmented per sample
(seeded by run seed, epoch and index), then scaled and normalized as without augmentation.

``read_idx``/``write_idx`` handle the IDX format itself (tests use the writer to make small files).
"""

from __future__ import annotations

import gzip
import http.client
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset, TensorDataset

from kiln.data.download import fetch
from kiln.data.images.augment import build_augment
from kiln.data.spec import DataBundle, DataSpec
from kiln.data.split import Arrays, make_bundle, split_data
from kiln.errors import DataError

if TYPE_CHECKING:
    from kiln.config.data_options import FashionMnistOptions, IdxOptions, MnistOptions
    from kiln.data.images.augment import Augment

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
INPUT_SCALE = 1 / 255  # raw pixels are 0..255; inputs are scaled to 0..1 before normalization
# IDX type codes -> big-endian numpy dtypes ("the IDX file format", yann.lecun.com/exdb/mnist/)
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class Source:
    """Where a dataset in MNIST's format is downloaded from, and what its classes are called."""

    name: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]  # published checksums of the .gz files
    class_names: tuple[str, ...]


MNIST = Source(
    "mnist",
    (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    tuple(str(i) for i in range(10)),
)
FASHION_MNIST = Source(
    "fashion_mnist",
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)


def read_idx(path: Path) -> npt.NDArray[Any]:
    """Read an IDX file (gzipped or not, detected from its content) into a native-endian array."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # the gzip magic number, whatever the file is called
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot read IDX file {path}: {exc}. Delete it and download it again."
        ) from exc
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _DTYPES:
        raise DataError(
            f"{path} is not an IDX file: its magic number is {raw[:4].hex()!r}, expected 0000 "
            f"then a type code ({', '.join(f'{c:02x}' for c in _DTYPES)}) and a dimension count"
        )
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(
            f"{path} is truncated: it ends inside its header. Delete it and download it again."
        )
    dims = struct.unpack(f">{raw[3]}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header promises shape {list(dims)} "
            f"({expected} bytes) but it holds {len(raw)} bytes. Delete it and download it again."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: npt.NDArray[Any]) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``."""
    big = array.dtype.newbyteorder(">")
    code = next((c for c, d in _DTYPES.items() if np.dtype(d) == big), None)
    if code is None:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; allowed: {sorted(set(_DTYPES.values()))}"
        )
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += np.ascontiguousarray(array, dtype=big).tobytes()
    path.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)


def build_mnist(cfg: MnistOptions, seed: int) -> DataBundle:
    """MNIST handwritten digits: 60,000 train and 10,000 test images of 28x28."""
    return _build(MNIST, cfg, seed)


def build_fashion_mnist(cfg: FashionMnistOptions, seed: int) -> DataBundle:
    """Fashion-MNIST (Zalando): the same format as MNIST, ten kinds of clothing."""
    return _build(FASHION_MNIST, cfg, seed)


def _build(source: Source, cfg: IdxOptions, seed: int) -> DataBundle:
    train_images, train_labels, test_images, test_labels = _locate(source, cfg)
    pixels, y = _load_pair(train_images, train_labels, len(source.class_names))
    test_pixels, y_test = _load_pair(test_images, test_labels, len(source.class_names))
    if pixels.shape[1:] != test_pixels.shape[1:]:
        raise DataError(
            f"{train_images} holds {list(pixels.shape[2:])} images but {test_images} holds "
            f"{list(test_pixels.shape[2:])}: both must have the same size"
        )
    spec = DataSpec(
        name=source.name,
        task="classification",
        input_shape=tuple(pixels.shape[1:]),
        num_classes=len(source.class_names),
        class_names=source.class_names,
        extra={"input_scale": INPUT_SCALE},
    )
    x, x_test = _scaled(pixels), _scaled(test_pixels)
    bundle = make_bundle(x, y, cfg, seed, spec, test=(x_test, y_test))
    augment = build_augment(cfg.augment, seed, channels=1)
    if augment is not None:  # the same carve of the raw pixels, augmented before scaling
        train_pixels = split_data(pixels, y, cfg, seed, test=(test_pixels, y_test)).train[0]
        bundle.train = AugmentedPixels(train_pixels, _targets(bundle.train), augment, bundle.spec)
    return bundle


def _scaled(pixels: torch.Tensor) -> torch.Tensor:
    """``uint8`` pixels as the 0..1 floats every split holds (before normalization)."""
    return pixels.float() * INPUT_SCALE


def _targets(train: object) -> torch.Tensor:
    """The targets of a split ``make_bundle`` built (a TensorDataset of inputs, targets)."""
    assert isinstance(train, TensorDataset)
    return train.tensors[1]


class AugmentedPixels(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The training split of an IDX dataset with ``data.augment``: each sample's ``uint8`` pixels
    are augmented, then scaled and normalized exactly as the plain split is (``_scaled``, then
    ``kiln.data.split.normalize``'s arithmetic), so only the augmentation differs.

    ``epoch_keys``: the training sampler passes ``(epoch, index)`` (``kiln.train.sampler``), which
    seeds the augmentation (``kiln.data.images.augment``); an index alone is epoch 0, as for
    ``image_folder``'s datasets. ``augment`` None (e.g. to evaluate the training split) gives the
    plain samples, bit-identical to the split without augmentation.
    """

    def __init__(
        self, pixels: torch.Tensor, targets: torch.Tensor, augment: Augment | None, spec: DataSpec
    ) -> None:
        self.pixels = pixels
        self.targets = targets
        self.augment = augment
        # float64, as normalize() computes them; none when data.normalize is off
        self.mean = torch.tensor(spec.mean, dtype=torch.float64) if spec.mean else None
        self.std = torch.tensor(spec.std, dtype=torch.float64) if spec.std else None

    @property
    def epoch_keys(self) -> bool:
        return self.augment is not None

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (0, int(key))
        pixels = self.pixels[index]
        x = _scaled(pixels if self.augment is None else self.augment(pixels, epoch, index))
        if self.mean is not None and self.std is not None:
            x = ((x.double() - self.mean) / self.std).float()
        return x, self.targets[index]


def _load_pair(images_path: Path, labels_path: Path, num_classes: int) -> Arrays:
    """Images as uint8 [N, 1, H, W] and labels as int64 [N], checked together."""
    images = torch.from_numpy(read_idx(images_path))
    labels = torch.from_numpy(read_idx(labels_path))
    if images.dtype != torch.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path} should hold uint8 images [N, H, W]; "
            f"got {images.dtype} {list(images.shape)}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{labels_path} should hold one label per image in {images_path} "
            f"({len(images)}); got shape {list(labels.shape)}"
        )
    if len(labels) and not (int(labels.min()) >= 0 and int(labels.max()) < num_classes):
        raise DataError(f"{labels_path} holds labels outside 0..{num_classes - 1}")
    return images.unsqueeze(1), labels.long()


def _locate(source: Source, cfg: IdxOptions) -> list[Path]:
    """The four files in FILES order, downloading missing ones when ``cfg.download`` is set."""
    if cfg.path is None:
        raise DataError(
            f"dataset {source.name!r} reads IDX files from a directory: set data.path=<directory> "
            "(with data.download=true to download them there)"
        )
    directory = cfg.path.expanduser()
    if directory.exists() and not directory.is_dir():
        raise DataError(
            f"data.path {directory} is a file; {source.name} needs a directory of IDX files"
        )

    def find(stem: str) -> Path | None:
        return next((p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()), None)

    missing = [stem for stem in FILES if find(stem) is None]
    if missing and not cfg.download:
        raise DataError(
            f"{source.name}: {', '.join(missing)} not found in {directory}. Expected the files "
            f"{', '.join(FILES)} (each may be gzipped, ending in .gz). Put them there, or set "
            "data.download=true to download them."
        )
    if missing:
        _download(source, directory, missing)
    return [p for p in map(find, FILES) if p is not None]


def _download(source: Source, directory: Path, stems: list[str]) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    directory.mkdir(parents=True, exist_ok=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns) as progress:
        for name in (f"{stem}.gz" for stem in stems):
            failures = []
            for url in (mirror + name for mirror in source.mirrors):
                try:
                    fetch(url, directory / name, source.md5[name], progress)
                    break
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    failures.append(f"{url} ({exc})")
            else:
                raise DataError(
                    f"could not download {name} for {source.name}; tried: {'; '.join(failures)}. "
                    f"Check the network, or put the files into {directory} by hand."
                )
