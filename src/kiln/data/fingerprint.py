"""A short hash that changes when the training data changes: logged with every run.

How the data part is hashed, first that applies:

- a bundle (or its training dataset) that knows a digest of its content (``ContentDigest``: an
  image folder knows every file's sha256 from its scan) gives it, and nothing is read or decoded;
- a ``TensorDataset``: its tensors, whole;
- any other dataset: its first and last ``_SAMPLES`` items, as the training split gives them
  (decoded and augmented: that costs a few hundred items at every start).
"""

from __future__ import annotations

import hashlib
import json
from typing import Protocol, runtime_checkable

import torch
from torch.utils.data import TensorDataset

from kiln.data.spec import DataBundle

_SAMPLES = 256  # for datasets that are not in memory, hash this many samples from each end


@runtime_checkable
class ContentDigest(Protocol):
    """A bundle or dataset that can name its content without being read.

    ``content_digest()`` is a stable string (the same in every process for the same data) that
    changes with anything training would see differently: any item, label, split or
    preprocessing. None: it cannot tell this time (the items are sampled instead).
    """

    def content_digest(self) -> str | None: ...


def fingerprint(bundle: DataBundle) -> str:
    """sha256 (first 16 hex digits) of the spec, the split sizes and the training data."""
    digest = hashlib.sha256()
    sizes = [len(s) if s is not None else 0 for s in (bundle.train, bundle.val, bundle.test)]  # type: ignore[arg-type]
    digest.update(json.dumps({"spec": bundle.spec.to_dict(), "sizes": sizes}, sort_keys=True, default=str).encode())
    content = _content_digest(bundle)
    train = bundle.train
    if content is not None:
        digest.update(b"content:" + content.encode())
    elif isinstance(train, TensorDataset):
        for tensor in train.tensors:
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        n = sizes[0]
        for index in [*range(min(n, _SAMPLES)), *range(max(_SAMPLES, n - _SAMPLES), n)]:
            for part in train[index]:
                if isinstance(part, torch.Tensor):
                    digest.update(part.detach().cpu().contiguous().numpy().tobytes())
                else:
                    digest.update(repr(part).encode())
    return digest.hexdigest()[:16]


def _content_digest(bundle: DataBundle) -> str | None:
    for source in (bundle, bundle.train):
        if isinstance(source, ContentDigest):
            found = source.content_digest()
            if found is not None:
                return found
    return None
