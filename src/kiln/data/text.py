"""A UTF-8 text file as character-level language-modeling data.

The text is cut into contiguous splits, ``[train | validation | test]`` by ``data.val_fraction``
and ``data.test_fraction`` (contiguous, not shuffled: shuffled characters would leak the
validation text into training through overlapping windows). The vocabulary is the sorted set of
characters of the *training* split; it becomes ``DataSpec.class_names``, so the model package
alone can encode a prompt and decode a sample. A character that only validation or test contain
maps to the replacement token ``REPLACEMENT`` (added to the vocabulary only when needed).

Training samples are all ``block_size`` windows of the training split (item ``i`` is the window
starting at character ``i``, its target the same window shifted by one). Kiln's ``EpochSampler``
draws them in a random order that is a pure function of ``(seed, epoch)``, so the checkpointed
loop position (epoch, batch in epoch) is the generator's whole state and a resumed run draws the
very same windows. Validation and test use non-overlapping windows: each character is scored once.
"""

from __future__ import annotations

import http.client
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import Dataset

from kiln.data.download import fetch
from kiln.data.spec import DataBundle, DataSpec
from kiln.errors import ConfigError, DataError

if TYPE_CHECKING:
    from kiln.config.data_options import TextOptions

log = logging.getLogger("kiln")

REPLACEMENT = "\ufffd"  # stands for characters the training split never showed


class Windows(Dataset[tuple[Tensor, Tensor]]):
    """``block_size`` windows of a token tensor: ``(ids[s:s+B], ids[s+1:s+B+1])`` for start ``s``.

    ``stride`` 1 gives every window (training); ``stride == block_size`` non-overlapping ones.
    """

    def __init__(self, ids: Tensor, block_size: int, stride: int) -> None:
        self.ids, self.block_size, self.stride = ids, block_size, stride

    def __len__(self) -> int:
        return max(0, (len(self.ids) - self.block_size - 1) // self.stride + 1)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        start = index * self.stride
        chunk = self.ids[start : start + self.block_size + 1]
        return chunk[:-1], chunk[1:]


def build_vocab(text: str) -> tuple[str, ...]:
    """The sorted distinct characters of ``text``: token id ``i`` is ``vocab[i]``."""
    return tuple(sorted(set(text)))


def encode(text: str, vocab: tuple[str, ...], what: str = "text") -> Tensor:
    """Token ids (int64) of ``text``; DataError listing any characters outside ``vocab``."""
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted(set(text) - index.keys())
    if unknown:
        raise DataError(
            f"{what} has {len(unknown)} character(s) outside the model's vocabulary: "
            f"{''.join(unknown)!r}. Allowed characters: {''.join(vocab)!r}"
        )
    return torch.tensor([index[ch] for ch in text], dtype=torch.int64)


def decode(ids: Tensor | list[int], vocab: tuple[str, ...]) -> str:
    return "".join(vocab[int(i)] for i in ids)


def read_text(cfg: TextOptions) -> str:
    """The file at ``data.path`` (downloaded from ``data.text.url`` first when asked to)."""
    if cfg.path is None:
        raise ConfigError(
            "data.name text needs data.path: a UTF-8 text file, e.g. data/shakespeare/input.txt "
            "(data.download=true fetches data.text.url there when the file is missing)"
        )
    path = Path(cfg.path)
    if not path.is_file() and cfg.download:
        download(cfg.text.url, path)
    if not path.is_file():
        raise DataError(
            f"text file {path} not found. Put a UTF-8 text file there, or set "
            f"data.download=true to fetch {cfg.text.url}"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc}); convert it, e.g. with iconv") from None


def download(url: str, path: Path) -> None:
    """Fetch ``url`` into ``path`` atomically (a partial file never takes the final name)."""
    try:
        fetch(url, path)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # network, bad URL, cut-off reply
        raise DataError(f"could not download {url} to {path}: {exc}. Put the file there by hand.") from None


def split_text(text: str, val_fraction: float, test_fraction: float) -> tuple[str, str, str]:
    """Contiguous ``(train, val, test)``: validation and test are the tail, in that order."""
    n = len(text)
    n_test = round(n * test_fraction)
    n_val = round(n * val_fraction)
    end_train = n - n_val - n_test
    return text[:end_train], text[end_train : n - n_test], text[n - n_test :]


def build(cfg: TextOptions, seed: int) -> DataBundle:
    """Read, split and encode the text; see the module docstring. ``seed`` is unused: the splits
    are contiguous and the window order is the sampler's."""
    del seed  # data.task is auto or language_modeling, and subset has no place here: TextOptions
    block = cfg.text.block_size
    text = read_text(cfg)
    train, val, test = split_text(text, cfg.val_fraction, cfg.test_fraction)
    if len(train) < block + 1:
        raise DataError(
            f"data.text.block_size={block} but the training split has only {len(train)} characters "
            f"({len(text)} in the file, before carving validation/test); a window needs "
            f"block_size + 1. Use data.text.block_size <= {max(1, len(train) - 1)} or a longer text."
        )
    vocab = build_vocab(train)
    held_out = set(val) | set(test)
    if held_out - set(vocab):
        log.warning("%d character(s) only in validation/test map to %r", len(held_out - set(vocab)), REPLACEMENT)
        vocab = (*vocab, REPLACEMENT)

    def windows(part: str, stride: int) -> Windows | None:
        if len(part) < block + 1:
            if part:
                log.warning("a %d-character split is shorter than one window; it is not used", len(part))
            return None
        known = set(vocab)
        ids = encode("".join(ch if ch in known else REPLACEMENT for ch in part), vocab)
        return Windows(ids, block, stride)

    spec = DataSpec(
        name=f"text:{Path(str(cfg.path)).name}",
        task="language_modeling",
        input_shape=(block,),
        num_classes=len(vocab),
        class_names=vocab,
        input_dtype="int64",
        extra={"characters": {"train": len(train), "val": len(val), "test": len(test)}},
    )
    train_windows = windows(train, 1)
    assert train_windows is not None
    return DataBundle(train=train_windows, val=windows(val, block), test=windows(test, block), spec=spec)
