"""Evaluate a finished run's model on one split of its data (rebuilt from the run's config; for an
image folder, from the splits the run recorded in ``data_splits.csv``, whatever the folder holds now).

Writes under ``<run>/eval/``: ``metrics_<split>.json`` (flat, split-prefixed numbers), for
classifiers ``classification_report_<split>.{txt,json}`` and ``confusion_matrix_<split>.{csv,png}``,
``training_curves.png``, ``worst_examples_<split>.png`` for image data (:mod:`kiln.eval.worst`),
``predictions_<split>.csv`` (file, true and predicted class, probabilities) for data read from
files, and ``cost.json`` (latency, size, parameters). ``plots=False`` skips matplotlib entirely;
``cost=False`` skips timing.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.errors import DataError, RegistryError, UsageError
from kiln.runs.rundir import RunDir

if TYPE_CHECKING:
    from kiln.data.images.preprocess import Preprocessing

log = logging.getLogger("kiln.eval")

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class EvalResult:
    run_dir: Path
    split: str
    metrics: dict[str, float]
    path: Path  # where the metrics were written
    cost: dict[str, float] = field(default_factory=dict)  # latency/size/parameters ({} if skipped)
    artifacts: list[Path] = field(default_factory=list)  # every other file written


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    overrides: Sequence[str] = (),
    *,
    plots: bool = True,
    cost: bool = True,
) -> EvalResult:
    """Metrics of the run's saved model on ``split``; ``overrides`` adjust the data section
    (e.g. ``data.path=/elsewhere``). Written to ``<run>/eval/metrics_<split>.json``.

    ``run_dir`` may be a registry URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``): the data
    is then rebuilt from the config of the version's run (its directory here, or its copy from MLflow).
    """
    from kiln.data.build import build_data
    from kiln.data.images.preprocess import adopt_saved_preprocessing
    from kiln.data.images.shared_memory import one_pass
    from kiln.data.loader import loader_knobs, make_loader
    from kiln.eval.predict import collect
    from kiln.models.package import load_package
    from kiln.runs.layout import write_json
    from kiln.tasks import build_task
    from kiln.train.rng import resolve_device

    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r} to evaluate on", field="split", received=split,
                         allowed=SPLITS)
    root = run_root(run_dir)
    cfg = RunDir(root).read_config(overrides)
    package = load_package(root)
    # the run's own splits, read once: no memory cache (kiln.data.images.shared_memory.one_pass)
    data = build_data(one_pass(cfg.data), cfg.run.seed, recorded_splits=RunDir(root).data_splits)
    dataset = {"train": data.train, "val": data.val, "test": data.test}[split]
    if dataset is None or len(dataset) == 0:  # type: ignore[arg-type]
        present = [s for s in SPLITS if (d := getattr(data, s)) is not None and len(d) > 0]
        raise DataError(f"dataset {cfg.data.name!r} has no {split} split in this configuration",
                        field="split", received=split, allowed=present)
    if getattr(dataset, "augment", None) is not None:  # the training split of augmented data
        dataset = copy.copy(dataset)  # evaluate the images themselves, not one epoch's augmentation
        dataset.augment = None  # type: ignore[attr-defined]
    saved = adopt_saved_preprocessing(dataset, package.spec, data.spec)
    device = resolve_device(cfg.run.device)
    model = package.model.to(device)
    task = build_task(data.spec, cfg.training.loss)
    task.to(device)
    loader = make_loader(dataset, cfg.training.eval_batch_size, cfg.data.num_workers,
                         **loader_knobs(cfg.data, device))
    predictions = collect(model, loader, task, device, cfg.training.precision)
    eval_dir = root / "eval"
    eval_dir.mkdir(exist_ok=True)
    metrics = {f"{split}_{k}": v for k, v in predictions.meter.items()}
    artifacts = _quality(predictions, data.spec, split, eval_dir, metrics, dataset, plots, saved)
    metrics[f"{split}_samples"] = len(dataset)  # type: ignore[arg-type]
    out = eval_dir / f"metrics_{split}.json"
    write_json(out, metrics)
    if plots:
        artifacts += _curves(root, eval_dir)
    vocab = data.spec.num_classes if data.spec.task == "language_modeling" else None  # token ids
    costs = measure_cost(root, package.model, data.spec.input_shape, vocab) if cost else {}
    return EvalResult(root, split, metrics, out, costs, artifacts)


def measure_cost(
    root: Path, model: Any, input_shape: Sequence[int], vocab_size: int | None = None
) -> dict[str, float]:
    """Latency, size and parameters of the run's model, written to ``<run>/eval/cost.json``.

    Timed on the CPU (where kiln's models are served) with the current torch thread count.
    """
    import torch

    from kiln.eval.latency import BATCH_SIZES, ITERATIONS, WARMUP, model_cost
    from kiln.models.package import WEIGHTS, resolve_package_dir
    from kiln.runs.layout import write_json

    costs = model_cost(model.cpu(), input_shape, resolve_package_dir(root) / WEIGHTS, vocab_size=vocab_size)
    (root / "eval").mkdir(exist_ok=True)
    write_json(root / "eval" / "cost.json", {
        "metrics": costs, "device": "cpu", "threads": torch.get_num_threads(),
        "batch_sizes": list(BATCH_SIZES), "warmup": WARMUP, "iterations": ITERATIONS,
        "latency": "per sample, eager model, random inputs", "size": "model.safetensors, MB = 10^6 bytes",
    })
    return costs


def run_root(run_dir: str | Path) -> Path:
    """The run directory to evaluate: ``run_dir`` itself, or the one behind a ``models:/`` URI."""
    if str(run_dir).startswith("models:/"):
        from kiln.registry.resolve import resolve_model_uri

        resolved = resolve_model_uri(str(run_dir))
        root = resolved.run_dir
        if not RunDir.is_run(root):
            raise RegistryError(
                f"{run_dir} resolved to version {resolved.version} (MLflow run {resolved.run_id}), "
                "but neither its run directory nor its MLflow artifacts hold the run's config.yaml, "
                "which eval needs to rebuild the data; evaluate the run directory instead"
            )
        return root
    return RunDir.open(run_dir).root


def _quality(predictions: Any, spec: Any, split: str, eval_dir: Path, metrics: dict[str, float],
             dataset: Any, plots: bool, preprocessing: Preprocessing | None = None) -> list[Path]:
    """Add the detailed metrics to ``metrics`` (keeping the meter's own) and write their files."""
    from kiln.eval.artifacts import classification_files, predictions_csv
    from kiln.eval.metrics import classification_report, probabilities, regression_metrics

    if spec.task == "language_modeling":  # the meter's loss, perplexity and accuracy say it all
        return []
    if spec.task == "regression":
        extra = regression_metrics(predictions.outputs, predictions.targets)
        metrics.update({f"{split}_{k}": v for k, v in extra.items() if f"{split}_{k}" not in metrics})
        return []
    report = classification_report(predictions.outputs, predictions.targets, spec.task, spec.class_names)
    metrics.update({f"{split}_{k}": v for k, v in report.metrics.items() if f"{split}_{k}" not in metrics})
    written = classification_files(report, eval_dir, split)
    files = _files(dataset)
    if files is not None:  # data read from files: what the model said of each one
        written.append(predictions_csv(probabilities(predictions.outputs, spec.task), predictions.targets,
                                       report.class_names, files, eval_dir / f"predictions_{split}.csv"))
    if plots:
        from kiln.eval.plots import confusion_png
        from kiln.eval.worst import is_image_spec, worst_png, worst_samples

        written.append(confusion_png(report.confusion, report.class_names,
                                     eval_dir / f"confusion_matrix_{split}.png", f"confusion matrix ({split})"))
        if is_image_spec(spec):
            misses = worst_samples(predictions.outputs, predictions.targets, spec.task, files)
            written.append(worst_png(misses, dataset, report.class_names, eval_dir / f"worst_examples_{split}.png",
                                     f"worst-classified {split} samples (highest loss first)", preprocessing))
    return written


def _files(dataset: Any) -> list[str] | None:
    """The file of each sample, in order, for datasets read from files (``image_folder`` has a
    ``files`` attribute); None for the others."""
    files = getattr(dataset, "files", None)
    if files is None or len(files) != len(dataset):
        return None
    return [str(f) for f in files]


def _curves(root: Path, eval_dir: Path) -> list[Path]:
    from kiln.eval.history import read_history
    from kiln.eval.plots import curves_png

    path = curves_png(read_history(root), eval_dir / "training_curves.png", f"training curves: {root.name}")
    return [] if path is None else [path]
