"""The options of image datasets: preprocessing (``data.image``), augmentation (``data.augment``)
and the ``image_folder`` entry itself.

Preprocessing is deterministic (decode, convert channels, resize, scale to 0..1, normalize) and is
saved in the model package, so eval, export parity, serve and predict apply exactly what training
did. Augmentation applies to the training split only, after the deterministic resize; each step is
one of torchvision.transforms.v2's, with its own validated options (``kiln.config.augment_options``).

>>> ImageFolderOptions(path="photos", augment=[{"name": "horizontal_flip"}]).augment[0].p
0.5
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from kiln.config.augment_options import AugmentStep
from kiln.config.data_options import SplitFractions
from kiln.config.section import Section

Resize = Literal["shorter_side_then_center_crop", "stretch", "pad"]
Stats = Literal["imagenet", "dataset"] | list[float]


class ImageConfig(Section):
    """How an image becomes the model's input (``data.image``). ``null`` means: the pretrained
    weights' own value when ``model.pretrained``, else the documented fallback."""

    size: int | None = Field(None, ge=8, le=4096, description="side of the square input; null: the weights' crop size, else 224")
    resize_size: int | None = Field(
        None, ge=8, le=8192,
        description="shorter_side_then_center_crop: the shorter side before the crop; null: the weights', else size",
    )
    resize: Resize = Field(
        "shorter_side_then_center_crop",
        description="shorter_side_then_center_crop, stretch (ignore the aspect ratio) or pad (whole image, zero borders)",
    )
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = Field(
        None, description="the resize filter; null: the weights' (timm's are mostly bicubic), else bilinear",
    )
    channels: Literal[1, 3] | None = Field(None, description="1 (grayscale) or 3 (RGB); null: 3")
    mean: Stats | None = Field(None, description="imagenet, dataset (measured on the training split) or one value per channel; null: the weights', else imagenet")
    std: Stats | None = Field(None, description="as mean")
    on_error: Literal["stop", "skip"] = Field(
        "stop", description="bad files found by the scan: stop before training (exit 2), or skip them and list them in the run dir"
    )
    cache: Literal["none", "memory", "disk"] = Field(
        "none", description="keep decoded, resized images so later epochs skip decoding (keyed by file content and preprocessing)"
    )

    @model_validator(mode="after")
    def _stats_fit_channels(self) -> ImageConfig:
        for key in ("mean", "std"):
            value = getattr(self, key)
            if isinstance(value, list) and self.channels is not None and len(value) not in (1, self.channels):
                raise ValueError(f"data.image.{key} has {len(value)} values for {self.channels} channels")
            if key == "std" and isinstance(value, list) and any(v <= 0 for v in value):
                raise ValueError(f"data.image.std {value} must be positive")
        return self


class ImageFolderOptions(SplitFractions):
    """A folder of images: ``ROOT/<class>/<file>`` (splits carved, stratified) or
    ``ROOT/{train,val,test}/<class>/<file>`` (used as given), or a CSV manifest of path,label."""

    name: Literal["image_folder"] = "image_folder"
    path: Path | None = Field(None, description="the folder (ROOT)")
    manifest: Path | None = Field(
        None, description="a CSV with columns path,label (and optionally split); paths relative to the CSV's folder"
    )
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0, description="validation carved per class (run seed)")
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0, description="test carved per class (fixed seed)")
    image: ImageConfig = Field(default_factory=ImageConfig, description="preprocessing, saved with the model")
    augment: list[AugmentStep] = Field(default_factory=list, description="training-split augmentation, in order")
    imbalance_warning: float = Field(
        10.0, gt=1, description="warn when the largest class of a split has this many times the smallest's images"
    )
