"""The deterministic preprocessing of an image model, saved in its model package.

``Preprocessing`` is what ``data.image`` resolves to (no nulls left): size, resize rule, channels,
mean and std. Training builds its evaluation and pre-augmentation steps from it, and eval, export
parity, serve and predict rebuild it from ``model.json`` (``DataSpec.extra["preprocess"]``), so an
image becomes the same tensor everywhere: training/serving skew has no place to hide.

The steps are torchvision.transforms.v2's: ``resized`` gives the cacheable uint8 tensor (decode,
resize), ``normalize`` the float input (scale to 0..1, then ``(x - mean) / std``). They call v2's
image kernels (``v2.functional.resize_image`` ...) directly rather than through ``v2.Compose``:
the same arithmetic, bit for bit (``resize_steps``/``normalize_steps`` are the equivalent v2
transforms, and a test holds the two equal), without the transform classes' per-call dispatch,
which costs more than the work itself on a small image (about 45 us a sample at 64x64).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from kiln.data.spec import DataSpec

log = logging.getLogger("kiln")

SPEC_KEY = "preprocess"  # where DataSpec.extra holds it
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    size: int
    resize: str  # shorter_side_then_center_crop | stretch | pad
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_size: int | None = None  # shorter_side_then_center_crop: shorter side before the crop
    interpolation: str = "bilinear"  # bilinear | bicubic | nearest (packages before it: bilinear)

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "resize": self.resize, "channels": self.channels,
                "mean": list(self.mean), "std": list(self.std), "resize_size": self.resize_size,
                "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(size=int(data["size"]), resize=str(data["resize"]), channels=int(data["channels"]),
                   mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
                   resize_size=None if data.get("resize_size") is None else int(data["resize_size"]),
                   interpolation=str(data.get("interpolation", "bilinear")))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def resize_steps(self) -> list[Any]:
        """The v2 steps from a decoded image to a ``uint8`` tensor of ``input_shape``."""
        from kiln._vision import torchvision

        torchvision()
        from torchvision.transforms import v2

        size = self.size
        mode = v2.InterpolationMode(self.interpolation)
        if self.resize == "stretch":
            steps = [v2.Resize((size, size), interpolation=mode, antialias=True)]
        elif self.resize == "pad":  # the whole image, longer side to size, zero borders
            steps = [v2.Resize(size=None, max_size=size, interpolation=mode, antialias=True), v2.CenterCrop(size)]
        else:
            steps = [v2.Resize(self.resize_size or size, interpolation=mode, antialias=True), v2.CenterCrop(size)]
        return [v2.PILToTensor(), *steps]

    def normalize_steps(self) -> list[Any]:
        """The v2 steps from a ``uint8`` tensor to the model's float input."""
        from kiln._vision import torchvision

        torchvision()
        import torch
        from torchvision.transforms import v2

        mean = list(self.mean) * (self.channels if len(self.mean) == 1 else 1)
        std = list(self.std) * (self.channels if len(self.std) == 1 else 1)
        return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_kernels"}  # rebuilt where used

    @functools.cached_property
    def _kernels(self) -> _Kernels:  # built once per process: the kernels and their arguments
        return _Kernels(self)

    def resized(self, image: Image.Image) -> torch.Tensor:
        """``image`` (already in the model's channels) as a resized ``uint8`` tensor."""
        return self._kernels.resized(image)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """A ``uint8`` tensor (or a batch of them) as the model's float input."""
        return self._kernels.normalize(pixels)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One decoded image as the model's input: what eval, serve and predict feed the model."""
        return self.normalize(self.resized(image))


class _Kernels:
    """``resize_steps`` and ``normalize_steps`` as direct calls of v2's image kernels."""

    def __init__(self, preprocess: Preprocessing) -> None:
        from kiln._vision import torchvision

        torchvision()
        import torch
        from torchvision.transforms.v2 import functional

        self.f = functional
        self.float32 = torch.float32
        self.mode = functional.InterpolationMode(preprocess.interpolation)
        size = preprocess.size
        if preprocess.resize == "stretch":
            self.resize: tuple[list[int] | None, int | None] = ([size, size], None)
            self.crop: list[int] | None = None
        elif preprocess.resize == "pad":
            self.resize, self.crop = (None, size), [size, size]
        else:
            self.resize, self.crop = ([preprocess.resize_size or size], None), [size, size]
        channels = preprocess.channels
        self.mean = list(preprocess.mean) * (channels if len(preprocess.mean) == 1 else 1)
        self.std = list(preprocess.std) * (channels if len(preprocess.std) == 1 else 1)

    def resized(self, image: Image.Image) -> torch.Tensor:
        f = self.f
        size, max_size = self.resize
        pixels: torch.Tensor = f.resize_image(f.pil_to_tensor(image), size, interpolation=self.mode, max_size=max_size,
                                antialias=True)
        if self.crop is not None:
            pixels = f.center_crop_image(pixels, self.crop)
        return pixels

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        scaled = self.f.to_dtype_image(pixels, self.float32, scale=True)
        # a new tensor unless pixels were float32 already: only then may it not be written in place
        normalized: torch.Tensor = self.f.normalize_image(scaled, self.mean, self.std, inplace=scaled is not pixels)
        return normalized


def default_stats(kind: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``imagenet`` mean and std for ``channels`` (their average for grayscale)."""
    if kind != "imagenet":
        raise ValueError(f"no fixed statistics named {kind!r}")
    if channels == 1:
        return (round(sum(IMAGENET_MEAN) / 3, 4),), (round(sum(IMAGENET_STD) / 3, 4),)
    return IMAGENET_MEAN, IMAGENET_STD


def from_spec(extra: dict[str, Any]) -> Preprocessing | None:
    """The preprocessing a model package recorded (``DataSpec.extra``), or None for non-image data."""
    data = extra.get(SPEC_KEY)
    return Preprocessing.from_dict(data) if isinstance(data, dict) else None


def adopt_saved_preprocessing(dataset: Any, saved: DataSpec, rebuilt: DataSpec) -> Preprocessing | None:
    """The model package's preprocessing (``saved``), made the rebuilt ``dataset``'s own, so eval
    and export parity feed the model what serve and predict will. The rebuilt data may resolve
    ``data.image`` otherwise (``mean: dataset`` measured on the folder of a ``data.path=...``
    override); the model knows only the preprocessing it was trained with. None for data without
    one (digits, CSV, ...); DataError when the rebuilt data's classes are not the model's."""
    from kiln.errors import DataError

    preprocessing = from_spec(saved.extra)
    if preprocessing is None:
        return None
    if tuple(saved.class_names) != tuple(rebuilt.class_names):
        raise DataError(
            f"the model was trained on classes {list(saved.class_names)}, but the data has "
            f"{list(rebuilt.class_names)}: its class indices would not mean the same classes",
            hint="use a folder with the same class folders (names and number)",
        )
    current = getattr(dataset, "preprocess", None)
    if current is not None and current != preprocessing:
        log.info("using the model package's preprocessing %s, not the rebuilt data's %s",
                 preprocessing.to_dict(), current.to_dict())
        dataset.preprocess = preprocessing
    return preprocessing
