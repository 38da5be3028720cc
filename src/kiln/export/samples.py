"""The inputs parity is checked on: held-out samples of the run's own data when it can be rebuilt.

Real samples matter: random inputs sit off the data manifold, where an export can differ (an int8
model, a ReLU boundary) in ways that never show on real data, or agree where real data would not.
Random inputs are only the fallback, and the record says so and why.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from kiln.data.spec import DataSpec
from kiln.errors import DataError, KilnError
from kiln.export.parity import Array

log = logging.getLogger("kiln.export")

RANDOM_SEED = 0  # fixed, so a fallback parity check is repeatable


def held_out_inputs(root: Path, spec: DataSpec, count: int) -> tuple[Array, str]:
    """Up to ``count`` inputs from the run's test split (else its validation split), and where
    they came from; random normal inputs of the spec's shape when the data cannot be rebuilt."""
    try:
        inputs, source = _from_data(root, spec, count)
    except (KilnError, OSError, ValueError, KeyError) as exc:
        reason = f"random normal inputs of shape {list(spec.input_shape)}: the run's data could not be rebuilt ({exc})"
        log.warning("parity check uses %s", reason)
        return random_inputs(spec, count), reason
    inputs = inputs.astype(spec.input_dtype)  # LM token ids stay integers
    if tuple(inputs.shape[1:]) != spec.input_shape:
        reason = (f"random normal inputs of shape {list(spec.input_shape)}: the rebuilt data has "
                  f"shape {list(inputs.shape[1:])}, not the model's")
        log.warning("parity check uses %s", reason)
        return random_inputs(spec, count), reason
    return inputs, source


def random_inputs(spec: DataSpec, count: int) -> Array:
    # Inputs are normalized to mean 0 / std 1 by kiln's datasets, so N(0, 1) is the right scale.
    rng = np.random.default_rng(RANDOM_SEED)
    if spec.task == "language_modeling":  # token ids: uniform over the vocabulary
        return rng.integers(0, spec.num_classes, (count, *spec.input_shape), dtype=np.int64)
    return rng.standard_normal((count, *spec.input_shape)).astype(np.float32)


def _from_data(root: Path, spec: DataSpec, count: int) -> tuple[Array, str]:
    import torch

    from kiln.config import load_config
    from kiln.data.build import build_data
    from kiln.data.images.preprocess import adopt_saved_preprocessing
    from kiln.data.images.shared_memory import one_pass
    from kiln.runs.layout import RunPaths

    config = root / "config.yaml"
    if not config.is_file():
        raise DataError(f"{root} has no config.yaml to rebuild the data from")
    cfg = load_config(config)
    # the run's own splits, a few images read once: no memory cache (shared_memory.one_pass)
    data = build_data(one_pass(cfg.data), cfg.run.seed, recorded_splits=RunPaths(root).data_splits)
    for name, split in (("test", data.test), ("validation", data.val)):
        if split is not None and len(split) > 0:  # type: ignore[arg-type]
            adopt_saved_preprocessing(split, spec, data.spec)  # the model's own, as serve applies it
            n = min(count, len(split))  # type: ignore[arg-type]
            batch = torch.stack([torch.as_tensor(split[i][0]) for i in range(n)])
            return batch.numpy(), f"{name} split ({n} samples)"
    raise DataError("the dataset has neither a test nor a validation split")
