"""Splitting, subsetting and normalizing in-memory datasets: the steps every builtin dataset shares.

The order is the same for every dataset, and it matters:

1. **test** is carved from the full data, only where a dataset ships no test split, with the
   fixed ``TEST_SEED``: the test set is then the same for every run seed, so runs stay comparable;
2. **validation** is carved from what is left, with the run seed;
3. **subset** keeps the first N remaining training samples;
4. **normalization** statistics come from that final training split only (nothing leaks from
   validation or test) and are applied to every split; they are returned for ``DataSpec.mean/std``.

Inputs are float32 tensors; class labels (classification and binary) are int64 of shape [N];
regression targets are float32 of shape [N, 1].

>>> kept, carved = carve(10, 0.2, seed=0, what="validation")
>>> len(kept), len(carved)
(8, 2)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from kiln.data.spec import DataBundle, DataSpec
from kiln.errors import DataError

if TYPE_CHECKING:
    from kiln.config.data_options import SplitOptions

TEST_SEED = 0  # the test carve never depends on the run seed
# DataSpec.extra key: samples per class (by class index) of the final training split, for
# classification and binary tasks; training.loss.class_weights: auto weighs classes by it.
CLASS_COUNTS = "class_counts"
_MIN_STD = 1e-8  # below this a split is treated as constant: centred, not divided by ~0

Arrays = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Splits:
    """Inputs and targets of each split; ``val``/``test`` are None when there is none."""

    train: Arrays
    val: Arrays | None
    test: Arrays | None


def carve(n: int, fraction: float, seed: int, what: str) -> tuple[Tensor, Tensor]:
    """Split ``range(n)`` into ``(kept, carved)`` indices, carving ``fraction`` of them at random.

    Deterministic for ``seed`` (its own ``torch.Generator``, so the global RNG is untouched). Both
    halves are sorted, so samples keep their source order and ``subset`` means "the first N".
    A positive fraction always carves at least one sample.
    """
    if fraction <= 0:
        return torch.arange(n), torch.arange(0)
    k = max(1, round(n * fraction))
    if k >= n:
        raise DataError(
            f"cannot carve a {what} split of fraction {fraction} from {n} samples: nothing "
            f"would be left to train on. Lower the fraction or provide more data."
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[k:].sort().values, perm[:k].sort().values


def split_data(
    x: Tensor,
    y: Tensor,
    cfg: SplitOptions,
    seed: int,
    *,
    val: Arrays | None = None,
    test: Arrays | None = None,
) -> Splits:
    """Carve test (unless ``test`` is given) and validation (unless ``val`` is), then subset."""
    if len(x) != len(y):
        raise DataError(f"{len(x)} inputs but {len(y)} targets: every sample needs one target")
    if test is None and cfg.test_fraction > 0:
        kept, carved = carve(len(x), cfg.test_fraction, TEST_SEED, "test (data.test_fraction)")
        test = (x[carved], y[carved])
        x, y = x[kept], y[kept]
    if val is None and cfg.val_fraction > 0:
        kept, carved = carve(len(x), cfg.val_fraction, seed, "validation (data.val_fraction)")
        val = (x[carved], y[carved])
        x, y = x[kept], y[kept]
    if cfg.subset is not None:
        if cfg.subset > len(x):
            raise DataError(
                f"data.subset={cfg.subset} but the training split has only {len(x)} samples "
                f"(after carving validation and test). Use data.subset <= {len(x)} or unset it."
            )
        x, y = x[: cfg.subset], y[: cfg.subset]
    return Splits(train=(x, y), val=val, test=test)


def fit_normalization(x: Tensor, per_feature: bool) -> tuple[Tensor, Tensor]:
    """Mean and std of training inputs: one scalar each (images), or one per column of [N, F].

    Population std (``correction=0``), computed in float64 so large splits do not lose precision.
    A constant input (std ~ 0) gets std 1: it is centred but not blown up.
    """
    data = x.double()
    if per_feature:
        mean, std = data.mean(0), data.std(0, correction=0)
    else:
        mean, std = data.mean().reshape(1), data.std(correction=0).reshape(1)
    std = torch.where(std > _MIN_STD, std, torch.ones_like(std))
    return mean, std


def normalize(
    splits: Splits, per_feature: bool
) -> tuple[Splits, tuple[float, ...], tuple[float, ...]]:
    """Standardize every split with statistics of the training split; return them for DataSpec."""
    mean, std = fit_normalization(splits.train[0], per_feature)

    def apply(arrays: Arrays | None) -> Arrays | None:
        if arrays is None:
            return None
        return ((arrays[0].double() - mean) / std).float(), arrays[1]

    train = apply(splits.train)
    assert train is not None
    out = Splits(train=train, val=apply(splits.val), test=apply(splits.test))
    return out, tuple(mean.tolist()), tuple(std.tolist())


def make_bundle(
    x: Tensor,
    y: Tensor,
    cfg: SplitOptions,
    seed: int,
    spec: DataSpec,
    *,
    per_feature: bool = False,
    val: Arrays | None = None,
    test: Arrays | None = None,
) -> DataBundle:
    """Split, subset and (when ``cfg.normalize``) normalize ``x``/``y`` into a DataBundle.

    ``spec`` describes the inputs before normalization; the statistics are filled in here.
    """
    splits = split_data(x, y, cfg, seed, val=val, test=test)
    if spec.task in ("classification", "binary"):
        counts = torch.bincount(splits.train[1].reshape(-1).long(), minlength=spec.num_classes).tolist()
        spec = dataclasses.replace(spec, extra={**spec.extra, CLASS_COUNTS: counts})
    if cfg.normalize:
        splits, mean, std = normalize(splits, per_feature)
        spec = dataclasses.replace(spec, mean=mean, std=std)

    def dataset(arrays: Arrays | None) -> TensorDataset | None:
        return None if arrays is None else TensorDataset(*arrays)

    train = TensorDataset(*splits.train)
    return DataBundle(train=train, val=dataset(splits.val), test=dataset(splits.test), spec=spec)
