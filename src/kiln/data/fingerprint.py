"""A short hash that changes when the training data changes: logged with every run."""

from __future__ import annotations

import hashlib
import json

import torch
from torch.utils.data import TensorDataset

from kiln.data.spec import DataBundle

_SAMPLES = 256  # for datasets that are not in memory, hash this many samples from each end


def fingerprint(bundle: DataBundle) -> str:
    """sha256 (first 16 hex digits) of the spec, the split sizes and the training data."""
    digest = hashlib.sha256()
    sizes = [len(s) if s is not None else 0 for s in (bundle.train, bundle.val, bundle.test)]  # type: ignore[arg-type]
    digest.update(json.dumps({"spec": bundle.spec.to_dict(), "sizes": sizes}, sort_keys=True, default=str).encode())
    train = bundle.train
    if isinstance(train, TensorDataset):
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
