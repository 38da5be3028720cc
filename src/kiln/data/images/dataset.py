"""A map-style dataset of image files, decoded lazily, with an optional cache of decoded pixels.

``dataset[i]`` reads file ``i``, decodes it (``open_image``), resizes it to a ``uint8`` tensor
(``Preprocessing.resized``), augments it (training split only) and normalizes it. The resized
``uint8`` tensor is what the cache keeps (``data.image.cache``), so later epochs skip decoding
and resizing, the expensive part, while augmentation still draws anew every epoch:

- ``memory``: one ``uint8`` store ``[N, C, H, W]`` and a "filled" flag per image, both in shared
  memory, created by the process that builds the dataset. DataLoader workers (forked, or spawned:
  torch passes shared tensors by handle) write into and read from that one store, so whatever
  ``num_workers`` is, each image is decoded once per run. torch reserves the store whole in
  /dev/shm as it makes it, read or not, so the image folder's builder counts every split's store
  together, times the ranks on the node, before it makes any (:mod:`kiln.data.images.shared_memory`).
  Entries are keyed by index, valid for this dataset's files within one run.
- ``disk``: one file per image under ``cache_dir`` (default ``$XDG_CACHE_HOME/kiln/images``, else
  ``~/.cache/kiln/images``), named by the sha256 of the image file's bytes and a digest of the
  resize settings (size, resize rule, resize_size, channels: what the cached pixels depend on;
  mean and std are applied after the cache). A changed file or setting is a new name, so nothing
  stale is ever served, and runs and datasets share entries. Each entry is written to a
  temporary file and renamed into place, so concurrent writers and a crash leave whole files
  only. The folder is never pruned: delete it to reclaim the space. The file itself is still read
  (and hashed) every epoch; decoding is what the cache saves.

>>> ds = ImageFolderDataset(["cat.jpg"], [0], Preprocessing(32, "stretch", 3, (0.5,), (0.5,)))  # doctest: +SKIP
>>> ds[0][0].shape  # doctest: +SKIP
torch.Size([3, 32, 32])
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from kiln import settings
from kiln.data.images.preprocess import Preprocessing
from kiln.data.images.shared_memory import MemoryStore
from kiln.errors import ConfigError, DataError

CACHES = ("none", "memory", "disk")

Augment = Callable[[torch.Tensor, int, int], torch.Tensor]


DECODE_RULES = 1  # kiln.data.images.decode's conversions: raise it when they change


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/kiln/images``, else ``~/.cache/kiln/images``. ConfigError when neither
    can be found (no $XDG_CACHE_HOME, no $HOME and a user id without a home: a container run as
    an arbitrary user)."""
    root = os.environ.get(settings.XDG_CACHE_HOME)
    if root:
        return Path(root) / "kiln" / "images"
    try:
        home = Path.home()
    except RuntimeError:  # pathlib: "Could not determine home directory."
        raise ConfigError(
            "no folder for kiln's caches: $XDG_CACHE_HOME is not set and this user has no home directory",
            field="data.image.cache", hint="set XDG_CACHE_HOME (or HOME) to a writable folder, or data.image.cache=memory",
        ) from None
    return home / ".cache" / "kiln" / "images"


def pixel_key(preprocess: Preprocessing) -> str:
    """A digest of what the resized pixels depend on: the settings (not mean/std, applied later)
    and the decoders' versions, so a disk cache written before a Pillow or torchvision upgrade is
    never served after it (serve decodes with the new ones)."""
    import PIL

    from kiln._vision import torchvision

    fields: dict[str, object] = {k: v for k, v in preprocess.to_dict().items() if k not in ("mean", "std")}
    fields["decoders"] = [PIL.__version__, torchvision().__version__, DECODE_RULES]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


class ImageFolderDataset(Dataset[tuple[torch.Tensor, int]]):
    """Image files and their class indices, read lazily: ``(input, class index)`` per item.

    A key is an index, or ``(epoch, index)``: the epoch reaches ``augment`` (called as
    ``augment(pixels, epoch, index)``), so one image is augmented differently each epoch and alike
    in every run; an index alone is epoch 0. ``epoch_keys`` tells the trainer's sampler to yield
    such pairs. ``targets`` are the class indices, as torchvision's ImageFolder has them.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        labels: Sequence[int],
        preprocess: Preprocessing,
        augment: Augment | None = None,
        cache: str = "none",
        cache_dir: str | Path | None = None,
    ) -> None:
        if len(files) != len(labels):
            raise DataError(f"{len(files)} image files but {len(labels)} labels: every file needs one label")
        if cache not in CACHES:
            raise ConfigError(f"unknown image cache {cache!r}", field="data.image.cache", allowed=CACHES)
        self.files = [Path(f) for f in files]
        self.targets = [int(v) for v in labels]
        self.preprocess = preprocess
        self.augment = augment
        self.cache = cache
        self.cache_dir = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) if cache == "disk" else None
        self._key: tuple[Preprocessing, str] | None = None  # pixel_key(preprocess), computed once
        self._memory = self._new_store() if cache == "memory" else None

    @property
    def epoch_keys(self) -> bool:
        """Whether the sampler should pass ``(epoch, index)`` keys: only augmentation needs them."""
        return self.augment is not None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        pixels, label = self._augmented(key)
        return self.preprocess.normalize(pixels), label

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[tuple[torch.Tensor, int]]:
        """A batch's items, as DataLoader asks for them: ``[self[key] for key in keys]``, bit for
        bit, but normalized as one ``uint8`` batch. One float conversion and normalization for the
        batch costs about 5 us an image against 28 for one call per image."""
        items = [self._augmented(key) for key in keys]
        if not items:
            return []
        batch = self.preprocess.normalize(torch.stack([pixels for pixels, _ in items]))
        return list(zip(batch.unbind(0), [label for _, label in items], strict=True))

    def _augmented(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """Item ``key``'s ``uint8`` pixels, augmented for its epoch, and its class index."""
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (0, int(key))
        index = self._check(index)
        pixels = self.pixels(index)
        if self.augment is not None:
            pixels = self.augment(pixels, epoch, index)
        return pixels, self.targets[index]

    def pixels(self, index: int) -> torch.Tensor:
        """Image ``index`` decoded and resized: ``uint8`` ``input_shape``, the caller's to change."""
        index = self._check(index)
        key = self._pixel_key()
        memory = self._memory
        if memory is not None:
            if memory.key != key:  # the resize settings changed: the store no longer holds them
                self._memory = memory = None  # dropped first: the new one need not find room beside it
                memory = self._memory = self._new_store()
            if memory.filled[index]:
                return memory.pixels[index].clone()
        pixels = self._from_disk(index, key) if self.cache_dir is not None else self._decode(index, None)
        if memory is not None:
            memory.pixels[index].copy_(pixels)
            memory.filled[index] = True  # after the pixels: a reader never sees a half-written image
        return pixels

    def _new_store(self) -> MemoryStore:
        return MemoryStore(len(self.files), self.preprocess.input_shape, self._pixel_key())

    def _decode(self, index: int, data: bytes | None) -> torch.Tensor:
        from kiln.data.images.decode import open_image

        path = self.files[index]
        try:
            image = open_image(data if data is not None else path, self.preprocess.channels)
        except (ValueError, OSError) as exc:  # the scan read it: the file changed since
            raise DataError(f"{path}: {exc} (it was readable when the data was scanned)") from None
        return self.preprocess.resized(image)

    def _pixel_key(self) -> str:
        """``pixel_key(self.preprocess)``, hashed once per preprocessing (eval may swap it in)."""
        if self._key is None or self._key[0] is not self.preprocess:
            self._key = (self.preprocess, pixel_key(self.preprocess))
        return self._key[1]

    def _from_disk(self, index: int, key: str) -> torch.Tensor:
        assert self.cache_dir is not None
        path = self.files[index]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read it any more: {exc.strerror or exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        entry = self.cache_dir / key / digest[:2] / f"{digest}.u8"
        shape = self.preprocess.input_shape
        try:
            raw = entry.read_bytes()
        except OSError:
            raw = b""
        if len(raw) == math.prod(shape):
            return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(shape)
        pixels = self._decode(index, data)
        _write_atomic(entry, pixels.contiguous().numpy().tobytes())
        return pixels

    def _check(self, index: int) -> int:
        n = len(self.files)
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for {n} images")
        return index % n

    def __repr__(self) -> str:
        return (f"ImageFolderDataset({len(self)} images, {self.preprocess.input_shape}, cache={self.cache}, "
                f"augment={self.augment!r})")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write the image cache {path.parent}: {exc.strerror or exc}",
                        hint="free some space, fix its permissions, or set data.image.cache to memory or none") from None
