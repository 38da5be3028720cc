"""The mean and std a model's inputs were normalized with, as arrays broadcastable to a batch
``[N, *input_shape]``: one rule for the server, which normalizes what clients send, and for
training's reference statistics, which undo it (``kiln.train.reference``), so that the two never
disagree. Pure NumPy: the server imports it without torch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kiln.data.images.preprocess import from_spec
from kiln.data.spec import DataSpec


def input_normalization(spec: DataSpec) -> tuple[Any, Any]:
    """(mean, std) of ``spec``'s inputs: the saved image preprocessing's, else the data spec's."""
    shape = tuple(spec.input_shape)
    preprocessing = from_spec(spec.extra)
    # JSON instances of an image model are in 0..1, the units ToDtype(scale=True) gives
    mean, std = (preprocessing.mean, preprocessing.std) if preprocessing is not None else (spec.mean, spec.std)
    return broadcast_stat(mean, shape, 0.0), broadcast_stat(std, shape, 1.0)


def broadcast_stat(values: tuple[float, ...], shape: tuple[int, ...], default: float) -> Any:
    """Mean or std as an array broadcastable to ``[N, *shape]``: one value, one per feature, or
    one per channel of an image (``[C, H, W]``); ``default`` when there are none.

    >>> broadcast_stat((0.5, 0.25, 0.1), (3, 8, 8), 0.0).shape
    (3, 1, 1)
    """
    if not values:
        return np.float64(default)
    array = np.asarray(values, dtype=np.float64)
    if array.size == 1:
        return array.reshape(())
    if len(shape) == 3 and array.size == shape[0] and array.size != math.prod(shape):
        return array.reshape(shape[0], 1, 1)
    return array.reshape(shape)
