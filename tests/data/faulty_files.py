"""A user's dataset (``data.target``) whose sample 1000 cannot be read: a kiln DataError raised in
a DataLoader worker process (between the 256 samples at each end the fingerprint reads itself)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from kiln.data.spec import DataBundle, DataSpec
from kiln.errors import DataError


class Unreadable(Dataset[Any]):
    def __len__(self) -> int:
        return 2048

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index == 1000:
            raise DataError("photos/cat_0005.jpg is truncated: re-download it or remove it")
        return torch.zeros(4), torch.tensor(index % 2)


def build() -> DataBundle:
    spec = DataSpec("unreadable", "classification", (4,), 2, ("a", "b"))
    return DataBundle(Unreadable(), Unreadable(), None, spec)
