"""Build the data of a run: a catalog dataset, or the user's own builder, checked the same way.

A user's builder is named by ``data.target`` ("package.module:function"), called with
``data.options`` as keyword arguments, and must return a :class:`~kiln.data.spec.DataBundle`. A
target that is a ``kiln.catalog.Entry`` with an options model is called like a catalog entry:
``build(options, seed)``, its options validated first.
Every bundle is then checked here, so a wrong shape or an empty split fails before training
starts, with a message naming the source, instead of as a shape error deep inside the model.

This module imports no torch at import time: ``kiln.data`` re-exports ``build_data`` and
``kiln.config`` (hence ``kiln --help``) imports ``kiln.data``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.catalog import Entry, import_object
from kiln.config.data_options import TargetData
from kiln.config.image_options import ImageFolderOptions
from kiln.config.loader import validate_options
from kiln.data.catalog import DATASETS
from kiln.data.spec import DataBundle, DataSpec
from kiln.errors import ConfigError, DataError

if TYPE_CHECKING:
    from kiln.config.data_options import DataConfig

_BUNDLE_HINT = (
    "expected kiln.data.DataBundle(train=..., val=... or None, test=... or None, "
    "spec=kiln.data.DataSpec(...))"
)


def build_data(cfg: DataConfig, seed: int, recorded_splits: Path | None = None) -> DataBundle:
    """The splits and spec for ``cfg``: ``cfg.target`` if set, else catalog dataset ``cfg.name``.

    ``seed`` (the run seed) drives the validation carve and any generated data; test splits never
    depend on it.

    ``recorded_splits``: when building the data of an existing run (eval, export, resume), the
    split record in its directory (``RunPaths.data_splits``). An ``image_folder`` dataset then
    takes its splits from it instead of carving the folder as it is now, which may have changed
    since (:mod:`kiln.data.images.recorded`); a path with no file there is warned about and
    carved as before. Passed down by the caller because data sits below the run directory's
    layer. Other datasets ignore it.
    """
    if isinstance(cfg, TargetData):
        source = f"data.target {cfg.target!r}"
        bundle: object = _call_target(cfg.target, cfg.options, seed, source)
    elif recorded_splits is not None and isinstance(cfg, ImageFolderOptions):
        from kiln.data.images.build import build  # torch: imported only when images are built

        source = f"dataset {cfg.name!r}"
        bundle = build(cfg, seed, recorded=recorded_splits)
    else:
        source = f"dataset {cfg.name!r}"
        bundle = DATASETS.get(cfg.name)(cfg, seed)
    return check_bundle(bundle, source)


def _call_target(target: str, options: dict[str, Any], seed: int, source: str) -> object:
    builder = import_object(target, "dataset builder (data.target)")
    if isinstance(builder, Entry) and builder.options is not None:  # a plugin with typed options
        return builder.load()(validate_options(builder.options, options, "data.options"), seed)
    if not callable(builder):
        raise ConfigError(
            f"{source} is a {type(builder).__name__}, not a function returning a DataBundle"
        )
    try:
        inspect.signature(builder).bind(**options)
    except TypeError as exc:  # the options do not fit: a config problem, said before calling
        raise ConfigError(
            f"data.options {options} do not fit {source}{inspect.signature(builder)}: {exc}"
        ) from None
    except ValueError:  # no introspectable signature (e.g. a builtin): let the call decide
        pass
    return builder(**options)


def check_bundle(bundle: object, source: str) -> DataBundle:
    """Return ``bundle`` unchanged if it keeps the DataBundle contract, else raise DataError.

    The error lists every problem at once; ``source`` says where the bundle came from
    (e.g. ``"data.target 'pkg.mod:fn'"``) so the user knows which builder to fix.
    """
    if not isinstance(bundle, DataBundle):
        got = f"{type(bundle).__name__} {bundle!r:.60}"
        raise DataError(f"{source} returned {got}; {_BUNDLE_HINT}")
    problems = _spec_problems(bundle.spec)
    for name in ("train", "val", "test"):
        split = getattr(bundle, name)
        if split is None:
            if name == "train":
                problems.append("train is None; a run needs training data")
        elif not isinstance(split, Sized):
            # the sampler shuffles indices and resumes mid-epoch, so it needs a map-style dataset
            problems.append(
                f"{name} ({type(split).__name__}) has no len(); use a map-style Dataset"
            )
        elif len(split) == 0:
            problems.append(f"{name} is empty; pass None for a split you do not have")
    if not problems:
        problems = sample_problems(bundle.train[0], bundle.spec)
    if problems:
        raise DataError(f"{source} gave an invalid DataBundle:\n  - " + "\n  - ".join(problems))
    return bundle


def _spec_problems(spec: object) -> list[str]:
    if not isinstance(spec, DataSpec):
        return [f"spec is {type(spec).__name__}, expected kiln.data.DataSpec"]
    problems = []
    allowed = {
        "classification": (2, math.inf), "binary": (2, 2), "regression": (1, 1),
        "language_modeling": (2, math.inf),
    }
    if spec.task not in allowed:
        problems.append(f"spec.task is {spec.task!r}; allowed: {', '.join(allowed)}")
    elif not allowed[spec.task][0] <= spec.num_classes <= allowed[spec.task][1]:
        low, high = allowed[spec.task]
        want = f"exactly {low}" if low == high else f"at least {low}"
        problems.append(f"spec.num_classes is {spec.num_classes}; {spec.task} needs {want}")
    if spec.class_names and len(spec.class_names) != spec.num_classes:
        problems.append(f"{len(spec.class_names)} class_names for {spec.num_classes} classes")
    if not spec.input_shape or any(not isinstance(d, int) or d <= 0 for d in spec.input_shape):
        problems.append(f"spec.input_shape {spec.input_shape} must be a tuple of positive ints")
    if len(spec.mean) != len(spec.std) or len(spec.mean) not in {0, 1, *spec.input_shape[:1]}:
        problems.append(
            f"spec.mean/std have {len(spec.mean)}/{len(spec.std)} values; expected none, one, "
            f"or one per channel/feature ({spec.input_shape[:1]})"
        )
    if any(s <= 0 for s in spec.std):
        problems.append(f"spec.std {spec.std} must be positive")
    return problems


def sample_problems(sample: object, spec: DataSpec, where: str = "train[0]") -> list[str]:
    """What is wrong with one ``(input, target)`` sample (``where``) for ``spec``: an empty list
    when nothing is."""
    import torch

    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        return [f"{where} is {type(sample).__name__}; each sample must be an (input, target) pair"]
    x, y = sample
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != spec.input_shape:
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        return [f"{where} input is {got}; spec.input_shape says {list(spec.input_shape)}"]
    target = torch.as_tensor(y)
    if spec.task == "language_modeling":  # next-token targets: one token id per input position
        if target.shape != x.shape or target.is_floating_point():
            return [f"{where} target must be token ids shaped like the input {list(x.shape)}"]
        return []
    if spec.task == "regression":
        return [] if target.is_floating_point() else [f"{where} regression target {y!r} must be a float"]
    if target.is_floating_point() or target.numel() != 1 or not 0 <= int(target) < spec.num_classes:
        return [
            f"{where} target {y!r} must be one integer class index in 0..{spec.num_classes - 1}"
        ]
    return []
