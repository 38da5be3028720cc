"""What a dataset tells the rest of kiln: its splits and a DataSpec describing one sample."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch.utils.data import Dataset

Task = Literal["classification", "binary", "regression", "language_modeling"]


@dataclass(frozen=True)
class DataSpec:
    """Shape and meaning of one sample; saved in the model package so a model can be served.

    ``mean``/``std`` are the normalization already applied to the inputs (one value for all
    features, or one per feature); a server applies the same before calling the model.
    """

    name: str
    task: Task
    input_shape: tuple[int, ...]
    num_classes: int  # classification: classes; binary: 2; regression: 1; LM: vocabulary size
    # language_modeling: class_names is the vocabulary (one character per token id)
    class_names: tuple[str, ...] = ()
    input_dtype: str = "float32"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def output_size(self) -> int:
        """Width of the model's last layer: one logit for binary and regression."""
        return 1 if self.task in ("binary", "regression") else self.num_classes

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        out["class_names"] = list(self.class_names)
        out["mean"] = list(self.mean)
        out["std"] = list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        return cls(
            name=data["name"],
            task=data["task"],
            input_shape=tuple(data["input_shape"]),
            num_classes=int(data["num_classes"]),
            class_names=tuple(data.get("class_names", ())),
            input_dtype=data.get("input_dtype", "float32"),
            mean=tuple(data.get("mean", ())),
            std=tuple(data.get("std", ())),
            extra=dict(data.get("extra", {})),
        )


@dataclass
class DataBundle:
    """The splits of one dataset plus its spec. ``val``/``test`` may be None (nothing to evaluate).

    A user's own dataset builder (``data.target``) returns one of these.
    """

    train: Dataset[Any]
    val: Dataset[Any] | None
    test: Dataset[Any] | None
    spec: DataSpec
    # What the builder found (counts per split and class, skipped files, warnings), for datasets
    # that report it (image_folder); the run writes it to <run>/data_report.json.
    report: dict[str, Any] | None = None
