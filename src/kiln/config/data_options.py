"""The options of each built-in dataset: the keys ``data:`` takes once ``data.name`` is chosen.

Each class is one member of the config's ``data`` union (``kiln.config.entries``); its builder in
``kiln.data`` receives a validated instance. Shared knobs come from small bases, so every dataset
that carves splits spells them alike: ``SplitFractions`` (validation and test fractions) and
``SplitOptions`` (those plus subset and normalization, for in-memory tensors). ``TargetData`` is
the member for a user's own dataset builder by import path.

>>> SyntheticOptions(synthetic={"n_samples": 64}).synthetic.noise
0.5
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from kiln.config.augment_options import AugmentStep
from kiln.config.section import Section


class DataConfig(Section):
    """What every ``data:`` section has: ``name`` (the catalog entry, or a label with ``target``)
    and the loader's worker count."""

    name: str = Field(description="a catalog dataset (see `kiln datasets`)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    persistent_workers: bool = Field(True, description="keep the worker processes from one epoch to the next")
    prefetch_factor: int | None = Field(None, ge=1, description="batches each worker loads ahead; null: PyTorch's 2")
    pin_memory: Literal["auto"] | bool = Field("auto", description="page-locked batches for faster copies; auto: on CUDA")


class SplitFractions(DataConfig):
    """Validation and test carved from the data by fraction."""

    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="validation carved from train (run seed)")
    test_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="test carved out where none ships (fixed seed)"
    )


class SplitOptions(SplitFractions):
    """The split, subset and normalization knobs of datasets held as tensors (``kiln.data.split``)."""

    subset: int | None = Field(None, gt=0, description="train on the first N training samples only")
    normalize: bool = Field(
        True, description="scale inputs (to mean 0 / std 1 of the training split)"
    )


class DigitsOptions(SplitOptions):
    """scikit-learn's bundled 8x8 digits (no download)."""

    name: Literal["digits"] = "digits"


class IdxOptions(SplitOptions):
    """A directory of the four IDX files of MNIST's format (the t10k pair is the test split)."""

    path: Path | None = Field(None, description="directory of the IDX files")
    download: bool = Field(False, description="download missing files into `path`")
    augment: list[AugmentStep] = Field(
        default_factory=list, description="training-split augmentation of the 0..255 pixels, in order"
    )


class MnistOptions(IdxOptions):
    """MNIST IDX files from data.path."""

    name: Literal["mnist"] = "mnist"


class FashionMnistOptions(IdxOptions):
    """Fashion-MNIST IDX files from data.path."""

    name: Literal["fashion_mnist"] = "fashion_mnist"


class CsvOptions(SplitOptions):
    """A CSV file with a header row: numeric feature columns and one target column."""

    name: Literal["csv"] = "csv"
    path: Path | None = Field(None, description="the CSV file")
    target_column: str = Field("target", description="the column holding the label or value")
    task: Literal["auto", "classification", "binary", "regression"] = Field(
        "auto", description="auto: inferred from the target column's values"
    )
    val_path: Path | None = Field(None, description="an explicit validation file instead of val_fraction")
    test_path: Path | None = Field(None, description="an explicit test file instead of test_fraction")


class SyntheticConfig(Section):
    n_samples: int = Field(2000, gt=0, description="samples generated, before the splits are carved")
    input_shape: list[int] = Field(
        default_factory=lambda: [1, 28, 28], description="shape of one sample"
    )
    num_classes: int = Field(10, ge=1, description="1 means regression (one continuous target)")
    noise: float = Field(0.5, ge=0, description="std of Gaussian noise around each class prototype")


class SyntheticOptions(SplitOptions):
    """Deterministic generated data: any input shape, any number of classes."""

    name: Literal["synthetic"] = "synthetic"
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig, description="what is generated")


class TextConfig(Section):
    block_size: int = Field(128, ge=1, description="characters per training window (the context length)")
    url: str = Field(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        description="where `data.download: true` fetches the file from when data.path is missing",
    )


class TextOptions(SplitFractions):
    """A UTF-8 text file for character-level language modeling (contiguous splits)."""

    name: Literal["text"] = "text"
    path: Path | None = Field(None, description="the UTF-8 text file")
    download: bool = Field(False, description="fetch `text.url` to `path` when it is missing")
    task: Literal["auto", "language_modeling"] = Field(
        "auto", description="auto means language_modeling (next-character prediction)"
    )
    text: TextConfig = Field(default_factory=TextConfig, description="windows and download source")

    @field_validator("task", mode="before")
    @classmethod
    def _only_language_modeling(cls, value: object) -> object:
        if value not in ("auto", "language_modeling"):
            raise ValueError(
                f"data.name text supports data.task language_modeling (or auto), not {value!r}"
            )
        return value


class TargetData(DataConfig):
    """Your own dataset: a builder named by import path, returning a ``kiln.data.DataBundle``.

    Chosen whenever ``target`` is set; ``name`` is then a free label. ``options`` are the keyword
    arguments of ``target`` (or, when ``target`` names a ``kiln.catalog.Entry`` with an options
    model, that model's fields, validated).
    """

    name: str = Field("custom", description="a label for your dataset")
    target: str = Field(description='your own dataset builder, "package.module:function"')
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for `target`")
