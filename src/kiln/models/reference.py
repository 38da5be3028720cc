"""Reference statistics in the model package (``reference.json``): what the training data and the
model's answers on it looked like, for drift monitoring to compare live traffic against.

Training computes them once, at its end, on the validation split (the train split when there is
none): :func:`compute_reference` over the inputs in the dataset's units (what a client sends to
``kiln serve``, before normalization) and the model's probabilities. They hold, as quantile bins
(:class:`Bins`: deciles, deduplicated, with each bin's share of the samples):

- tabular (any non-image) models: each of the first ``MAX_FEATURES`` input values (``feature_0``
  ...), the values the prediction log keeps;
- image models (``[C, H, W]`` with 1 or 3 channels): per sample, each channel's mean and standard
  deviation (``channel_mean_0``, ``channel_std_0``, ...) and the brightness, the mean over
  channels of the channel means (``brightness``);
- every model: the share of each predicted class and the top-1 probability's bins
  (``confidence``); a regression model, its predicted value's bins (``prediction``).

The column names are those of the prediction log's summaries (:func:`columns_from_summaries`)
and of ``kiln monitor export``. NumPy only: the server reads this without torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kiln.data.spec import DataSpec
from kiln.errors import ModelError

REFERENCE = "reference.json"
REFERENCE_VERSION = 1
BINS = 10  # deciles: fine enough to see a shift, coarse enough for a few hundred live samples
MAX_FEATURES = 64  # the prediction log's bound (kiln.monitor.summary.MAX_FEATURES; a test holds them equal)

FloatArray = npt.NDArray[np.float64]


def is_image(shape: Sequence[int]) -> bool:
    """Whether inputs of ``shape`` are summarized as an image (as ``kiln serve`` decides)."""
    return len(shape) == 3 and shape[0] in (1, 3)


@dataclass(frozen=True)
class Bins:
    """Quantile bins of a reference sample and the share of that sample in each.

    ``edges`` are the inner edges, increasing; bin ``i`` holds ``edges[i-1] <= x < edges[i]``, and
    the two outer bins are open, so a live value beyond the training range lands in an end bin.

    >>> b = Bins(edges=(1.5,), proportions=(0.5, 0.5))
    >>> b.shares(np.array([0.0, 5.0, 6.0, 1.5])).tolist()
    [0.25, 0.75]
    """

    edges: tuple[float, ...]
    proportions: tuple[float, ...]

    def shares(self, values: npt.ArrayLike) -> FloatArray:
        """The share of ``values`` in each bin (all zeros for no values)."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        counts = np.bincount(np.searchsorted(np.asarray(self.edges), values, side="right"),
                             minlength=len(self.edges) + 1).astype(np.float64)
        return counts / len(values) if len(values) else counts

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "proportions": list(self.proportions)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bins:
        edges, proportions = tuple(map(float, data["edges"])), tuple(map(float, data["proportions"]))
        if len(proportions) != len(edges) + 1 or list(edges) != sorted(set(edges)):
            raise ValueError(f"bins need increasing edges and one more proportion, got {dict(data)}")
        return cls(edges, proportions)


def quantile_bins(values: npt.ArrayLike, bins: int = BINS) -> Bins:
    """Bins at the quantiles of ``values`` and the share of ``values`` in each.

    Each edge is put in the gap between the two distinct values around its quantile, never on a
    value: data with ties (pixels, counts, a feature's floor) would otherwise have whole groups of
    equal values sit on an edge, where a last-digit difference between training's arithmetic and
    the server's moves them all to the other bin. Quantiles that fall in one gap give one edge; a
    quantile at the maximum gets an edge just above it (a shift past the training range shows); a
    constant gets one just below and one just above. Values within a millionth (relative) of each
    other count as one value: the same tie computed in float32 and in float64.

    >>> quantile_bins(np.array([0.0, 0.0, 0.0, 1.0]), bins=2).edges
    (0.5,)
    >>> quantile_bins(np.array([2.0, 2.0]), bins=10).proportions
    (0.0, 1.0, 0.0)
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    distinct = np.unique(values)
    if len(distinct) == 0:
        return Bins((), (0.0,))
    # values a few float32 steps apart are one value (a tie computed twice): never split by an edge
    first = np.concatenate([[True], np.diff(distinct) > _nudge(distinct[1:])])
    edges: tuple[float, ...]
    starts, ends = distinct[first], distinct[np.concatenate([first[1:], [True]])]
    if len(starts) == 1:
        edges = (float(starts[0] - _nudge(starts[0])), float(ends[0] + _nudge(ends[0])))
    else:
        after = np.searchsorted(starts, np.quantile(values, np.arange(1, bins) / bins), side="right")
        edges = tuple(sorted({float((ends[g - 1] + starts[g]) / 2) if g < len(starts)
                              else float(ends[-1] + _nudge(ends[-1])) for g in after}))
    return Bins(edges, tuple(float(s) for s in Bins(edges, ()).shares(values)))


def _nudge(value: Any) -> Any:
    """A step past ``value`` far larger than float32's rounding of it, far smaller than data's."""
    return 1e-6 * np.maximum(1.0, np.abs(value))


@dataclass(frozen=True)
class Reference:
    """The reference statistics of one model package (see the module docstring)."""

    split: str  # the split they were computed on: validation, or train when there was none
    samples: int
    kind: str  # "image" or "tabular": which input columns there are
    inputs: dict[str, Bins]
    classes: tuple[str, ...] = ()  # empty for regression
    class_proportions: tuple[float, ...] = ()
    confidence: Bins | None = None  # top-1 probability (classification)
    prediction: Bins | None = None  # the predicted value (regression)
    names: dict[str, str] = field(default_factory=dict)  # column -> the dataset's feature name

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": REFERENCE_VERSION, "split": self.split, "samples": self.samples,
            "kind": self.kind, "inputs": {k: b.to_dict() for k, b in self.inputs.items()},
            "names": self.names, "classes": list(self.classes),
            "class_proportions": list(self.class_proportions),
            "confidence": None if self.confidence is None else self.confidence.to_dict(),
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        def bins(value: Any) -> Bins | None:
            return None if value is None else Bins.from_dict(value)

        return cls(
            split=str(data["split"]), samples=int(data["samples"]), kind=str(data["kind"]),
            inputs={str(k): Bins.from_dict(v) for k, v in data["inputs"].items()},
            classes=tuple(map(str, data["classes"])),
            class_proportions=tuple(map(float, data["class_proportions"])),
            confidence=bins(data.get("confidence")), prediction=bins(data.get("prediction")),
            names={str(k): str(v) for k, v in (data.get("names") or {}).items()},
        )


def input_columns(raw: npt.ArrayLike, image: bool, max_features: int = MAX_FEATURES) -> dict[str, FloatArray]:
    """Per-sample input columns of a batch ``[N, *shape]`` in the dataset's units: what the
    prediction log's summary of each instance gives (:func:`columns_from_summaries`)."""
    raw = np.asarray(raw, dtype=np.float32)  # float32 arithmetic, as the server's summary
    n = len(raw)
    if image:
        pixels = raw.reshape(n, raw.shape[1], -1)
        means, stds = pixels.mean(axis=2), pixels.std(axis=2)
        return _image_columns(means.astype(np.float64), stds.astype(np.float64))
    flat = raw.reshape(n, -1)[:, :max_features].astype(np.float64)
    return {f"feature_{i}": flat[:, i] for i in range(flat.shape[1])}


def columns_from_summaries(summaries: Iterable[Mapping[str, Sequence[float]]]) -> dict[str, FloatArray]:
    """The same columns from the prediction log's summaries (``{"feature": [...]}`` or
    ``{"channel_mean": [...], "channel_std": [...]}`` per instance)."""
    rows = list(summaries)
    if not rows:
        return {}
    if "channel_mean" in rows[0]:
        means = np.asarray([r["channel_mean"] for r in rows], dtype=np.float64)
        stds = np.asarray([r["channel_std"] for r in rows], dtype=np.float64)
        return _image_columns(means, stds)
    values = np.asarray([r["feature"] for r in rows], dtype=np.float64)
    return {f"feature_{i}": values[:, i] for i in range(values.shape[1])}


def _image_columns(means: FloatArray, stds: FloatArray) -> dict[str, FloatArray]:
    columns = {f"channel_mean_{c}": means[:, c] for c in range(means.shape[1])}
    columns |= {f"channel_std_{c}": stds[:, c] for c in range(stds.shape[1])}
    columns["brightness"] = means.mean(axis=1)
    return columns


def top1(probabilities: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Predicted class and its probability per row, as the server logs them (argmax)."""
    p = np.asarray(probabilities, dtype=np.float64)
    classes = p.argmax(axis=1)
    return classes, p[np.arange(len(p)), classes]


def compute_reference(raw: npt.ArrayLike, outputs: npt.ArrayLike, spec: DataSpec, split: str) -> Reference:
    """The reference of a sample: ``raw`` inputs ``[N, *input_shape]`` in the dataset's units and
    the model's ``outputs`` on them as the server answers them (probabilities ``[N, classes]``,
    or the value ``[N, 1]`` for regression)."""
    raw = np.asarray(raw)
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(raw), -1)
    if len(raw) == 0:
        raise ModelError(f"no samples in the {split} split to compute reference statistics from")
    image = is_image(spec.input_shape)
    columns = input_columns(raw, image)
    features = spec.extra.get("feature_names") or []
    names = {f"feature_{i}": str(n) for i, n in enumerate(features[:MAX_FEATURES])} if not image else {}
    common: dict[str, Any] = {
        "split": split, "samples": len(raw), "kind": "image" if image else "tabular",
        "inputs": {k: quantile_bins(v) for k, v in columns.items()}, "names": names,
    }
    if spec.task == "regression":
        return Reference(**common, prediction=quantile_bins(outputs[:, 0]))
    classes = list(spec.class_names) or [str(i) for i in range(outputs.shape[1])]
    predicted, confidence = top1(outputs)
    counts = np.bincount(predicted, minlength=len(classes)) / len(predicted)
    return Reference(**common, classes=tuple(classes), class_proportions=tuple(map(float, counts)),
                     confidence=quantile_bins(confidence))


def write_reference(path: Path, reference: Reference) -> None:
    """Write ``reference`` as JSON at ``path`` through a temporary file of this process and a
    rename (several server workers may write the same copy at once)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(reference.to_dict(), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_reference(path: Path) -> Reference | None:
    """The reference at ``path`` (a ``reference.json``, or a package directory holding one); None
    when there is none (a package trained before kiln saved them); ModelError when damaged."""
    if path.is_dir():
        path = path / REFERENCE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = int(data.get("version", 0))
    except (ValueError, AttributeError, OSError) as exc:
        raise ModelError(f"{path} is not valid reference statistics ({exc}); delete it, or train "
                         "the run again to write it anew") from None
    if version > REFERENCE_VERSION:
        raise ModelError(f"{path} has version {version}, newer than this kiln understands "
                         f"({REFERENCE_VERSION}); upgrade kiln")
    try:
        return Reference.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} is not valid reference statistics ({type(exc).__name__}: {exc}); "
                         "delete it, or train the run again to write it anew") from None
