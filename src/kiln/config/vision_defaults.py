"""What torchvision and timm say about an architecture and its weights, read when a config names one.

A pretrained backbone was trained on images prepared one way (a crop size, a shorter side before
the crop, a mean and std); fine-tuning and serving it work best with the same. So when the model
starts from trained weights (``model.pretrained`` or ``model.weights``) and the data has an
``image`` section, the section's unset (null) fields take the weights' own values while the config
is validated, and the run's saved config.yaml holds them resolved:

- torchvision: the weights enum's ``transforms()`` (``crop_size``, ``resize_size``, ``mean``,
  ``std``, ``interpolation``) of ``model.weights_name``;
- timm: the architecture's ``pretrained_cfg`` (``input_size``, ``crop_pct``, ``mean``, ``std``,
  ``interpolation``: bicubic for most of timm's weights, where a bilinear resize shifts inputs).

A local ``weights`` file is taken to come from those weights (the library's file copied to an
offline machine, or a model fine-tuned from it). A ``size`` you set keeps the weights' proportion
of resize to crop (224 of 256 becomes 64 of 73), and one channel takes the mean of the three
channels' statistics. The libraries are imported only here and only when such a model is
configured with something left to fill (``kiln --help`` imports neither).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kiln.config.image_options import ImageConfig
from kiln.config.model_options import BackboneOptions, TimmOptions, TorchvisionOptions
from kiln.errors import ConfigError

if TYPE_CHECKING:
    from kiln.config.data_options import DataConfig
    from kiln.config.model_options import ModelConfig


@dataclass(frozen=True)
class WeightsPreprocessing:
    """How the images a set of weights was trained on were prepared."""

    size: int  # side of the square crop
    resize_size: int  # shorter side before the crop
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float | None = None  # timm's crop / resize fraction (torchvision: from the sizes)
    interpolation: str = "bilinear"  # the resize filter the weights were trained with

    def resize_for(self, size: int) -> int:
        """The shorter side before a crop to ``size``, in the weights' proportion."""
        if size == self.size:
            return self.resize_size
        if self.crop_pct is not None:
            return math.floor(size / self.crop_pct)  # timm's own rule (transforms_factory)
        return size * self.resize_size // self.size

    def stats(self, channels: int) -> tuple[list[float], list[float]]:
        """Mean and std for ``channels``: one channel takes the average of the three."""
        if channels == 1 and len(self.mean) == 3:
            return [round(sum(self.mean) / 3, 4)], [round(sum(self.std) / 3, 4)]
        return list(self.mean), list(self.std)


def fill_image_defaults(model: ModelConfig, data: DataConfig) -> None:
    """Set the unset fields of ``data.image`` from the starting weights of ``model`` (see above)."""
    image = getattr(data, "image", None)
    if not isinstance(model, BackboneOptions) or not model.starts_pretrained or not isinstance(image, ImageConfig):
        return
    crops = image.resize == "shorter_side_then_center_crop"
    unset = [k for k in ("size", "channels", "mean", "std", "interpolation") if getattr(image, k) is None]
    if crops and image.resize_size is None:
        unset.append("resize_size")
    if not unset:
        return  # nothing to fill: the libraries are not imported (a saved config is resolved)
    weights = weights_preprocessing(model)
    size = image.size if image.size is not None else weights.size
    channels = image.channels if image.channels is not None else 3
    mean, std = weights.stats(channels)
    filled: dict[str, Any] = {
        "size": size, "channels": channels,
        "mean": image.mean if image.mean is not None else mean,
        "std": image.std if image.std is not None else std,
        "interpolation": image.interpolation or weights.interpolation,
    }
    if crops and image.resize_size is None:
        filled["resize_size"] = weights.resize_for(size)
    resolved = ImageConfig.model_validate({**image.model_dump(), **filled})  # checked as if written
    data.image = resolved  # type: ignore[attr-defined]  # data has an `image` section (found above)


def weights_preprocessing(model: BackboneOptions) -> WeightsPreprocessing:
    """The preprocessing of ``model``'s starting weights, from the library (imported here)."""
    if isinstance(model, TorchvisionOptions):
        transforms = torchvision_weights(model.arch, model.weights_name).transforms()
        return WeightsPreprocessing(
            size=int(transforms.crop_size[0]), resize_size=int(transforms.resize_size[0]),
            mean=tuple(transforms.mean), std=tuple(transforms.std),
            interpolation=_filter(str(getattr(transforms.interpolation, "value", transforms.interpolation))),
        )
    if isinstance(model, TimmOptions):
        cfg = timm_pretrained_cfg(model.arch)
        size = int(cfg.input_size[-1])
        crop_pct = float(cfg.crop_pct)
        return WeightsPreprocessing(
            size=size, resize_size=math.floor(size / crop_pct), mean=tuple(cfg.mean),
            std=tuple(cfg.std), crop_pct=crop_pct, interpolation=_filter(str(cfg.interpolation or "")),
        )
    raise TypeError(f"no known weights for model {model.name!r}")


def _filter(name: str) -> str:
    """A library's resize filter as a ``data.image.interpolation`` value (bilinear when it names
    one kiln does not offer, e.g. timm's "random")."""
    return name.lower() if name.lower() in ("bilinear", "bicubic", "nearest") else "bilinear"


def torchvision_archs() -> list[str]:
    """The names of torchvision's classification builders (``torchvision.models`` itself)."""
    from kiln._vision import torchvision

    models = torchvision().models
    names: list[str] = models.list_models(module=models)
    return names


def check_torchvision_arch(arch: str) -> None:
    """ConfigError with a did-you-mean unless ``arch`` is a torchvision classification builder."""
    known = torchvision_archs()
    if arch not in known:
        raise _unknown_arch(arch, known, "torchvision", "resnet18, mobilenet_v3_small, efficientnet_b0")


def torchvision_weights(arch: str, name: str) -> Any:
    """The weights enum member ``name`` (e.g. DEFAULT, IMAGENET1K_V1) of torchvision's ``arch``."""
    check_torchvision_arch(arch)
    from kiln._vision import torchvision

    enum = torchvision().models.get_model_weights(arch)
    members = list(enum.__members__)
    if name not in members:
        raise ConfigError(
            f"model.weights_name {name!r} is not a weights of torchvision's {arch}",
            field="model.weights_name", allowed=members,
        )
    return enum[name]


def check_timm_arch(arch: str) -> None:
    """ConfigError with a did-you-mean unless timm has the architecture ``arch`` (a weights tag
    after a dot is checked when weights are looked up)."""
    from kiln._vision import timm

    library = timm()
    if not library.is_model(arch):
        raise _unknown_arch(arch, library.list_models(), "timm", "resnet18, efficientnet_b0, convnext_tiny")


def timm_pretrained_cfg(arch: str) -> Any:
    """timm's ``PretrainedCfg`` of ``arch`` (``name`` or ``name.tag``)."""
    check_timm_arch(arch)
    from kiln._vision import timm

    library = timm()
    try:
        cfg = library.models.get_pretrained_cfg(arch)
    except RuntimeError:  # an unknown tag
        base = arch.split(".", 1)[0]
        raise ConfigError(
            f"timm has no weights {arch!r}", field="model.arch",
            allowed=library.list_pretrained(f"{base}.*") or f"no pretrained weights for {base}",
        ) from None
    if cfg is None:
        raise ConfigError(f"timm has no pretrained weights for {arch!r}", field="model.arch")
    return cfg


def _unknown_arch(arch: str, known: list[str], library: str, examples: str) -> ConfigError:
    close = difflib.get_close_matches(arch, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"e.g. {examples}"
    return ConfigError(
        f"model.arch {arch!r} is not a {library} classification model ({len(known)} are)",
        field="model.arch", hint=hint,
    )
