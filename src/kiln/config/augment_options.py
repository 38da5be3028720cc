"""The augmentation steps of ``data.augment``: one options model per torchvision.transforms.v2 step.

A step is named by ``name`` (the config is a discriminated union on it), so an option that does
not belong to the chosen step is an error. Kept apart from ``image_options`` because the built-in
IDX datasets (``data_options.IdxOptions``: mnist, fashion_mnist) take ``data.augment`` too, and
``image_options`` builds on ``data_options``: the steps sit below both.
``kiln.data.images.augment.build_augment`` turns a list of them into the seeded per-sample
transform.

>>> HorizontalFlip(name="horizontal_flip").p
0.5
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from kiln.config.section import Section


class _Step(Section):
    """One augmentation step; ``name`` picks it."""


class RandomResizedCrop(_Step):
    name: Literal["random_resized_crop"]
    scale: tuple[float, float] = Field((0.08, 1.0), description="area fraction range of the crop")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="aspect ratio range of the crop")


class RandomCrop(_Step):
    name: Literal["random_crop"]
    padding: int = Field(4, ge=0, description="zero pixels added on each side before cropping back")


class HorizontalFlip(_Step):
    name: Literal["horizontal_flip"]
    p: float = Field(0.5, ge=0, le=1)


class VerticalFlip(_Step):
    name: Literal["vertical_flip"]
    p: float = Field(0.5, ge=0, le=1)


class Rotation(_Step):
    name: Literal["rotation"]
    degrees: float = Field(15.0, ge=0, le=180, description="rotate by up to this many degrees either way")


class Affine(_Step):
    name: Literal["affine"]
    degrees: float = Field(0.0, ge=0, le=180)
    translate: tuple[float, float] | None = Field(None, description="max shift as a fraction of width, height")
    scale: tuple[float, float] | None = Field(None, description="zoom range, e.g. [0.9, 1.1]")


class ColorJitter(_Step):
    name: Literal["color_jitter"]
    brightness: float = Field(0.0, ge=0)
    contrast: float = Field(0.0, ge=0)
    saturation: float = Field(0.0, ge=0)
    hue: float = Field(0.0, ge=0, le=0.5)


class Grayscale(_Step):
    name: Literal["grayscale"]
    p: float = Field(0.1, ge=0, le=1)


class GaussianBlur(_Step):
    name: Literal["gaussian_blur"]
    kernel_size: int = Field(3, ge=1, description="side of the blur kernel, odd")
    sigma: tuple[float, float] = Field((0.1, 2.0))

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a kernel centred on its pixel), got {value}; use {value + 1}")
        return value


class TrivialAugment(_Step):
    name: Literal["trivial_augment"]


class RandAugment(_Step):
    name: Literal["rand_augment"]
    num_ops: int = Field(2, ge=1)
    magnitude: int = Field(9, ge=0, le=30)


class AutoAugment(_Step):
    name: Literal["auto_augment"]
    policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet"


class RandomErasing(_Step):
    name: Literal["random_erasing"]
    p: float = Field(0.5, ge=0, le=1)
    scale: tuple[float, float] = Field((0.02, 0.33), description="area fraction range erased")


AugmentStep = Annotated[
    RandomResizedCrop | RandomCrop | HorizontalFlip | VerticalFlip | Rotation | Affine | ColorJitter
    | Grayscale | GaussianBlur | TrivialAugment | RandAugment | AutoAugment | RandomErasing,
    Field(discriminator="name"),
]
