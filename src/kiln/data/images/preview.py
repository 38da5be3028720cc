"""A PNG grid of training samples as the model receives them, each with its class name: look
before you train (``kiln data preview``; ``kiln train`` writes one into the run directory).

The samples are ``count`` of the training split, the classes taken in turn, in epoch 0, augmented exactly as
training augments them (key ``(0, i)`` for datasets with ``epoch_keys``), then un-normalized with
the data's mean and std so they look like pictures again. Tiny images are scaled up (nearest
neighbour, whole multiples) so a 28-pixel digit and its label stay readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kiln.data.images.preprocess import from_spec

if TYPE_CHECKING:
    from kiln.config.schema import KilnConfig
    from kiln.data.spec import DataBundle, DataSpec

COLUMNS = 8
PADDING = 2  # pixels between cells (torchvision.utils.make_grid's padding)
LABEL_HEIGHT = 14  # the band under each image that holds its class name
MIN_SIDE = 64  # images smaller than this are scaled up by a whole factor


def write_preview(cfg: KilnConfig, path: Path, count: int = 32) -> Path:
    """Build ``cfg``'s data and write the grid of ``count`` training samples to ``path``."""
    from kiln.data.build import build_data
    from kiln.data.images.shared_memory import one_pass

    # a few images read once: no memory cache, which would reserve every split's store
    return preview_from_bundle(build_data(one_pass(cfg.data), cfg.run.seed), path, count)


def preview_from_bundle(bundle: DataBundle, path: Path, count: int = 32) -> Path:
    """The grid for an already built ``bundle``, written to ``path`` (returned)."""
    from PIL import Image, ImageDraw

    from kiln._vision import torchvision

    torchvision()
    from torchvision.utils import make_grid

    if count < 1:
        raise ValueError(f"a preview needs at least one sample; got count={count}")
    train: Any = bundle.train
    keyed = bool(getattr(train, "epoch_keys", False))
    samples = [train[(0, i) if keyed else i] for i in _spread(train, count)]
    images = torch.stack([_picture(x, bundle.spec) for x, _ in samples])
    scale = max(1, -(-MIN_SIDE // images.shape[-1]))
    images = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    images = torch.nn.functional.pad(images, (0, 0, 0, LABEL_HEIGHT), value=1.0)  # white label band
    grid = make_grid(images, nrow=COLUMNS, padding=PADDING, pad_value=1.0)
    canvas = Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy(), "RGB")
    draw = ImageDraw.Draw(canvas)
    cell_height, cell_width = images.shape[-2] + PADDING, images.shape[-1] + PADDING
    names = bundle.spec.class_names
    for i, (_, target) in enumerate(samples):
        label = int(target)
        name = names[label] if label < len(names) else str(label)
        row, column = divmod(i, COLUMNS)
        left, bottom = column * cell_width + PADDING, (row + 1) * cell_height
        draw.text((left + 2, bottom - LABEL_HEIGHT + 1), _fit(draw, name, cell_width - 4), fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def _spread(train: Any, count: int) -> list[int]:
    """Up to ``count`` sample indices taking the classes in turn (the first of each class, then the
    second, ...), so a folder listed class by class does not preview one class only; the first
    ``count`` indices for data without a ``targets`` list."""
    targets = getattr(train, "targets", None)
    if not isinstance(targets, (list, tuple)) or len(targets) != len(train):
        return list(range(min(count, len(train))))
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(int(target), []).append(index)
    queues = [by_class[c] for c in sorted(by_class)]
    picked: list[int] = []
    for rank in range(max(len(q) for q in queues)):
        picked += [q[rank] for q in queues if rank < len(q)]
        if len(picked) >= count:
            break
    return picked[:count]


def _picture(x: torch.Tensor, spec: DataSpec) -> torch.Tensor:
    """A model input back to 0..1 pixels [C, H, W]: undo ``(x - mean) / std``."""
    preprocess = from_spec(spec.extra)
    mean, std = (preprocess.mean, preprocess.std) if preprocess is not None else (spec.mean, spec.std)
    x = x.detach().float().cpu()
    if mean and std:
        shape = (-1, 1, 1) if len(mean) > 1 else (1,)
        x = x * torch.tensor(std).reshape(shape) + torch.tensor(mean).reshape(shape)
    return x.clamp(0, 1)


def _fit(draw: Any, text: str, width: int) -> str:
    """``text``, cut short with an ellipsis so it fits ``width`` pixels."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text + "..."
