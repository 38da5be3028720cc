"""Seeded per-sample augmentation: ``data.augment`` as torchvision.transforms.v2 steps whose random
draws depend only on (run seed, epoch, sample index).

Why not let the transforms draw from torch's global RNG, as tutorials do? Then what a sample
becomes would depend on which DataLoader worker happened to load it and on what that worker drew
before, so ``num_workers: 0`` and ``2`` would train different models, and a run resumed mid-epoch
would see other augmentations than the run it continues. Here each call seeds the CPU generator
from a 64-bit mix of the three numbers, runs the steps, and puts the generator's previous state
back: the same sample in the same epoch is always augmented alike, another epoch differently, no
two samples share a stream, and the process's own random numbers (dropout in the main process,
which exact resume replays) are untouched.

The v2 transforms offer no ``generator=`` argument; they draw from ``torch.default_generator``
(and only from it: no Python ``random`` nor NumPy). Saving and restoring that generator's state
costs about 3 microseconds a sample; ``torch.random.fork_rng`` costs about 200 (it also seeds
every accelerator) and ``torch.manual_seed`` would reseed CUDA's generators too, so neither is used.

>>> from kiln.config.augment_options import HorizontalFlip
>>> flip = build_augment([HorizontalFlip(name="horizontal_flip", p=1.0)], seed=0)
>>> flip(torch.tensor([[[1, 2]]], dtype=torch.uint8), epoch=0, index=0).tolist()
[[[2, 1]]]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from kiln.config import augment_options as a
from kiln.errors import ConfigError

if TYPE_CHECKING:
    from kiln.config.augment_options import AugmentStep

_MASK64 = (1 << 64) - 1
_PERSON = b"kiln-augment"  # keeps these seeds apart from any other use of the same three numbers


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A stable 63-bit seed for one sample in one epoch (BLAKE2b of the three numbers).

    Stable across processes, machines and Python versions (unlike ``hash``), and any change to
    any of the three gives an unrelated seed.
    """
    payload = b"".join((int(v) & _MASK64).to_bytes(8, "little") for v in (seed, epoch, index))
    digest = hashlib.blake2b(payload, digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: within every generator's seed range


class Augment:
    """``data.augment`` for one run: ``augment(pixels, epoch, index)`` -> the augmented pixels.

    ``pixels`` is one ``uint8`` image ``[C, H, W]``; the result has the same dtype and shape
    (crops are taken back to the input's size). Picklable, so DataLoader workers get a copy: it
    holds only the validated steps and the seed, and builds the v2 transforms lazily, once per
    image size, in whichever process calls it.
    """

    def __init__(self, steps: Sequence[AugmentStep], seed: int) -> None:
        self.steps = tuple(steps)
        self.seed = seed
        self._transforms: dict[tuple[int, int], Callable[[torch.Tensor], torch.Tensor]] = {}

    def __call__(self, pixels: torch.Tensor, epoch: int, index: int) -> torch.Tensor:
        if pixels.dtype != torch.uint8 or pixels.ndim != 3:
            raise ValueError(f"augment takes one uint8 image [C, H, W]; got {pixels.dtype} {list(pixels.shape)}")
        height, width = pixels.shape[-2:]
        transform = self._transforms.get((height, width))
        if transform is None:
            transform = self._transforms[height, width] = _compose(self.steps, (height, width))
        generator = torch.default_generator
        saved = generator.get_state()
        generator.manual_seed(sample_seed(self.seed, epoch, index))
        try:
            return transform(pixels)
        finally:
            generator.set_state(saved)

    def __getstate__(self) -> dict[str, Any]:
        return {"steps": self.steps, "seed": self.seed}  # transforms are rebuilt where used

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.steps, self.seed, self._transforms = state["steps"], state["seed"], {}

    def __repr__(self) -> str:
        return f"Augment({[step.name for step in self.steps]}, seed={self.seed})"


def build_augment(steps: Sequence[AugmentStep], seed: int, *, channels: int | None = None) -> Augment | None:
    """The seeded augmentation for ``steps`` (``data.augment``), or None when there are none.

    ``channels`` (the images' channel count, when the caller knows it) lets steps that cannot act
    on it fail here, before training, as a ConfigError: on one channel, ``color_jitter``'s
    ``saturation`` and ``hue`` and the ``grayscale`` step would do nothing at all (torchvision
    returns grayscale images unchanged), and a setting that silently does nothing is a mistake
    worth hearing about. Every step is also built once here, so a bad combination fails early.
    """
    if not steps:
        return None
    if channels == 1:
        _check_grayscale(steps)
    _compose(steps, (32, 32))
    return Augment(steps, seed)


def _check_grayscale(steps: Sequence[AugmentStep]) -> None:
    for i, step in enumerate(steps):
        where = f"data.augment[{i}] ({step.name})"
        if isinstance(step, a.Grayscale):
            raise ConfigError(
                f"{where} turns colour images gray, but these images have 1 channel: it would do "
                "nothing. Remove the step, or set data.image.channels: 3."
            )
        if isinstance(step, a.ColorJitter) and (step.saturation or step.hue):
            raise ConfigError(
                f"{where} sets saturation={step.saturation}, hue={step.hue}, but these images have "
                "1 channel, which has neither: they would do nothing. Set them to 0 (brightness and "
                "contrast apply), or use data.image.channels: 3."
            )


def _compose(steps: Sequence[AugmentStep], size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    from kiln._vision import torchvision

    torchvision()
    from torchvision.transforms import v2

    compose: Callable[[torch.Tensor], torch.Tensor] = v2.Compose([_step(step, size) for step in steps])
    return compose


def _step(step: AugmentStep, size: tuple[int, int]) -> Any:
    """One config step as its v2 transform; crops come back to ``size`` (the input's)."""
    from torchvision.transforms import v2

    match step:
        case a.RandomResizedCrop():
            return v2.RandomResizedCrop(size, scale=step.scale, ratio=step.ratio, antialias=True)
        case a.RandomCrop():
            return v2.RandomCrop(size, padding=step.padding)
        case a.HorizontalFlip():
            return v2.RandomHorizontalFlip(step.p)
        case a.VerticalFlip():
            return v2.RandomVerticalFlip(step.p)
        case a.Rotation():
            return v2.RandomRotation(step.degrees)
        case a.Affine():
            return v2.RandomAffine(step.degrees, translate=step.translate, scale=step.scale)
        case a.ColorJitter():
            return v2.ColorJitter(step.brightness, step.contrast, step.saturation, step.hue)
        case a.Grayscale():
            return v2.RandomGrayscale(step.p)  # keeps the channel count: three equal channels
        case a.GaussianBlur():
            return v2.GaussianBlur(step.kernel_size, sigma=step.sigma)
        case a.TrivialAugment():
            return v2.TrivialAugmentWide()
        case a.RandAugment():
            return v2.RandAugment(num_ops=step.num_ops, magnitude=step.magnitude)
        case a.AutoAugment():
            return v2.AutoAugment(v2.AutoAugmentPolicy(step.policy))
        case a.RandomErasing():
            return v2.RandomErasing(step.p, scale=step.scale)
    raise AssertionError(f"no transform for augment step {step!r}")  # the schema lists them all
