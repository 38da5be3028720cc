"""``data.name: image_folder``: a folder (or CSV manifest) of your images as a DataBundle.

The steps, in order:

1. **scan** (``kiln.data.images.scan``): every file listed, decoded and hashed; problems stop the
   run here (``data.image.on_error: stop``) or leave the bad files out (``skip``);
2. **splits**: given ones (``ROOT/{train,val,test}/``, a manifest's ``split`` column) are used as
   they are; a missing one is carved from the training images, per class (stratified, so every
   class is in every split): test with the fixed ``TEST_SEED`` (the same test set for every run
   seed, as kiln's other datasets), then validation with the run seed. Each class is carved with
   its own seed derived from its name, so adding a class never reshuffles the others;
3. **preprocessing**: ``data.image`` with its nulls resolved (size 224, channels 3, ImageNet
   mean/std); ``dataset`` statistics are measured on the training split's resized images, which
   decodes that split once more (through the cache, when one is on, so the pass also fills it);
4. **datasets** decoding lazily (``kiln.data.images.dataset``), the training one augmented, and a
   **report** (``DataBundle.report``: layout, per-split per-class counts, skipped and ignored
   files, warnings) that the run writes to ``data_report.json``.

With ``cache: memory`` every split's store is counted at once (times the ranks on this node)
against /dev/shm's free space when the build started, before any store is made, and all are made
before step 3's statistics pass (:mod:`kiln.data.images.shared_memory`).

For the data of an existing run (eval, export's parity samples, a resume) steps 1 and 2 are the
run's record instead (``recorded``, ``<run>/data_splits.csv``; :mod:`kiln.data.images.recorded`):
its files, checked against their sha256, in their recorded splits and order, whatever the folder
holds now. The bundle of every build carries its splits' files (``ImageFolderBundle.record``),
which a new run writes as that record.

The DataSpec records the class names, the preprocessing (``extra["preprocess"]``, read by eval,
export, serve and predict) and the training split's class counts (``extra["class_counts"]``, read
by ``training.loss.class_weights: auto``).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kiln.data.images import shared_memory
from kiln.data.images.dataset import ImageFolderDataset
from kiln.data.images.preprocess import SPEC_KEY, Preprocessing, default_stats
from kiln.data.images.recorded import ImageFolderBundle, record_rows, recorded_files
from kiln.data.images.scan import (
    SPLITS,
    ImageFile,
    Issue,
    ScanError,
    ScanResult,
    data_root,
    report_entries,
    scan,
)
from kiln.data.spec import DataBundle, DataSpec
from kiln.data.split import CLASS_COUNTS, TEST_SEED, carve

if TYPE_CHECKING:
    from kiln.config.image_options import ImageConfig, ImageFolderOptions

log = logging.getLogger("kiln")

FALLBACK_SIZE = 224  # data.image.size when neither the config nor pretrained weights set it
FALLBACK_CHANNELS = 3
_MIN_STD = 1e-8  # a constant channel is centred, not divided by ~0 (as kiln.data.split)
LAYOUTS = {"class_folders": "ROOT/<class>/<file>", "split_folders": "ROOT/{train,val,test}/<class>/<file>",
           "manifest": "CSV manifest"}


@dataclass(frozen=True)
class Plan:
    """The files of each split (None: no such split) and where each split came from."""

    splits: dict[str, list[ImageFile] | None]
    origins: dict[str, str | None]  # "given" | "carved" | "recorded" | None

    def counts(self, class_names: Sequence[str]) -> dict[str, dict[str, int] | None]:
        """Images per class (every class, zeros included) of each split."""
        out: dict[str, dict[str, int] | None] = {}
        for name, files in self.splits.items():
            found = Counter(f.class_name for f in files or [])
            out[name] = None if files is None else {c: found[c] for c in class_names}
        return out


def build(options: ImageFolderOptions, seed: int, recorded: Path | None = None) -> DataBundle:
    """Scan, split and preprocess ``options`` into lazy datasets, a DataSpec and a report.

    ``recorded``: the split record of the run whose data this is (``<run>/data_splits.csv``),
    read instead of a scan and a carve (see :mod:`kiln.data.images.recorded`). None for a new
    run. A path with no file there (a run from before kiln recorded its splits, or a record
    deleted) is warned about, and the folder carved as for a new run: the best that can be done.
    """
    # read before the scan, while no rank of this node can have made its stores yet (shared_memory)
    free = shared_memory.free_space() if options.image.cache == "memory" else None
    memory = shared_memory.available_memory() if free is not None else None
    if recorded is not None and recorded.is_file():
        result, plan = from_record(options, recorded)
    else:
        if recorded is not None:
            log.warning("%s does not exist (a run from before kiln recorded its splits?): the splits are "
                        "carved again from the folder as it is now, which gives the run's own only if "
                        "no image was added, removed or changed since", recorded)
        result = scan(options)
        result.check(options.image.on_error)
        plan = plan_splits(result, options, seed)
    classes = result.class_names
    index = {name: i for i, name in enumerate(classes)}

    def dataset(split: str, preprocess: Preprocessing, augment: Any = None) -> ImageFolderDataset | None:
        files = plan.splits[split]
        if files is None:
            return None
        return ImageFolderDataset([f.path for f in files], [index[f.class_name] for f in files], preprocess,
                                  augment=augment, cache=options.image.cache)

    augment = None
    if options.augment:  # built first: a step that cannot apply fails before any decoding
        from kiln.data.images.augment import build_augment

        augment = build_augment(options.augment, seed, channels=options.image.channels or FALLBACK_CHANNELS)
    resized = resolve_preprocessing(options.image)  # the statistics may still be measured, not the shape
    # every split's store, counted together (times the ranks on this node) before any is made
    shared_memory.check_shared_memory({name: shared_memory.store_bytes(len(files), resized.input_shape)
                                       for name, files in plan.splits.items() if files}, free, memory)
    # every split made before the statistics pass decodes the training one: a store that finds
    # no room fails before that pass, not after it
    train = dataset("train", resized, augment)
    val, test = dataset("val", resized), dataset("test", resized)
    assert train is not None  # plan_splits always gives a training split
    preprocess = resolve_preprocessing(options.image, train)
    for split in (train, val, test):
        if split is not None:
            split.preprocess = preprocess  # the statistics (if measured) change; the cached pixels do not
    counts = plan.counts(classes)
    warnings = imbalance_warnings(counts, options.imbalance_warning)
    for line in warnings:
        log.warning("%s", line)
    report = build_report(result, plan, counts, preprocess, options, warnings)
    log.info("%s", describe(report))
    train_counts = counts["train"] or {}
    spec = DataSpec(
        name=(result.source.stem if result.layout == "manifest" else result.source.name) or "image_folder",
        task="classification", input_shape=preprocess.input_shape,
        num_classes=len(classes), class_names=classes, input_dtype="float32",
        mean=preprocess.mean, std=preprocess.std,
        extra={SPEC_KEY: preprocess.to_dict(), CLASS_COUNTS: [train_counts[c] for c in classes]},
    )
    return ImageFolderBundle(train=train, val=val, test=test,
                             spec=spec, report=report, record=record_rows(plan.splits, data_root(options)))


def from_record(options: ImageFolderOptions, record: Path) -> tuple[ScanResult, Plan]:
    """The scan result and split plan that ``record`` (a run's ``data_splits.csv``) gives: its
    files, each checked against its sha256, in their recorded splits and order. Every class
    trained on has a training image (the scan saw to it), so the labels give the classes."""
    layout, files = recorded_files(options, record)
    source = options.manifest if options.manifest is not None else data_root(options)
    result = ScanResult(layout=layout, source=source, class_names=tuple(sorted({f.class_name for f in files})),
                        files=files, splits_given=True, scanned=len(files))
    splits: dict[str, list[ImageFile] | None] = {}
    for name in SPLITS:
        chosen = [f for f in files if f.split == name]
        splits[name] = chosen or None
    return result, Plan(splits, {name: "recorded" if chosen else None for name, chosen in splits.items()})


def plan_splits(result: ScanResult, options: ImageFolderOptions, seed: int) -> Plan:
    """The usable files of ``result`` in train/val/test: given splits kept, missing ones carved
    (test first, fixed seed; then validation, run seed). Raises ScanError for a class too small
    to give every carved split one image."""
    if result.splits_given:
        given = {name: [f for f in result.files if f.split == name] for name in SPLITS}
        train = given["train"]
    else:
        given, train = {}, list(result.files)
    splits: dict[str, list[ImageFile] | None] = {"train": train, "val": None, "test": None}
    origins: dict[str, str | None] = {"train": "given" if result.splits_given else "carved", "val": None, "test": None}
    for name, fraction, carve_seed in (("test", options.test_fraction, TEST_SEED), ("val", options.val_fraction, seed)):
        if given.get(name):
            splits[name], origins[name] = given[name], "given"
        elif fraction > 0:
            train, splits[name] = carve_per_class(train, fraction, carve_seed, name, result.class_names)
            origins[name] = "carved"
    splits["train"] = train
    return Plan(splits, origins)


def carve_per_class(files: list[ImageFile], fraction: float, seed: int, split: str,
                    class_names: Sequence[str]) -> tuple[list[ImageFile], list[ImageFile]]:
    """(kept, carved): ``fraction`` of each class's files carved (at least one), each class with
    a seed of its own (``seed`` and its name)."""
    kept: list[ImageFile] = []
    carved: list[ImageFile] = []
    option = f"data.{split}_fraction"
    problems = []
    for name in class_names:
        group = [f for f in files if f.class_name == name]
        if not group:
            continue  # a class without images: the scan has said so
        if max(1, round(len(group) * fraction)) >= len(group):
            problems.append(Issue(f"class {name!r}", f"{len(group)} image(s) left to carve from: too few "
                                                     f"for a {split} split ({option}={fraction}) of one or more"))
            continue
        keep, take = carve(len(group), fraction, _class_seed(seed, name), split)
        kept += [group[i] for i in keep.tolist()]
        carved += [group[i] for i in take.tolist()]
    if problems:
        raise ScanError(f"too few images to carve a {split} split from every class:\n"
                        + "\n".join(f"  - {p}" for p in problems), problems,
                        hint=f"add images to these classes, or set {option}=0 for no {split} split")
    return kept, carved


def _class_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:7], "little")  # 56 bits: within every generator's seed range


def resolve_preprocessing(image: ImageConfig, train: ImageFolderDataset | None = None) -> Preprocessing:
    """``data.image`` with its nulls resolved. ``mean``/``std: dataset`` are measured on ``train``
    (the training split); without it, ImageNet's stand in."""
    channels = image.channels or FALLBACK_CHANNELS
    mean, std = default_stats("imagenet", channels)
    measured = None
    if "dataset" in (image.mean, image.std) and train is not None:
        measured = measure_stats(train.pixels, len(train))

    def pick(value: Any, imagenet: tuple[float, ...], index: int) -> tuple[float, ...]:
        if isinstance(value, list):
            return tuple(float(v) for v in value)
        if value == "dataset" and measured is not None:
            return measured[index]
        return imagenet

    return Preprocessing(size=image.size or FALLBACK_SIZE, resize=image.resize, channels=channels,
                         mean=pick(image.mean, mean, 0), std=pick(image.std, std, 1), resize_size=image.resize_size,
                         interpolation=image.interpolation or "bilinear")


def measure_stats(pixels: Callable[[int], torch.Tensor], count: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``count`` uint8 images scaled to 0..1, in float64.

    One pass, one decode per image (fewer with a warm cache); a constant channel gets std 1.
    """
    total = squares = None
    n = 0
    for i in range(count):
        x = pixels(i).to(torch.float64).div_(255.0).flatten(1)
        total = x.sum(1) if total is None else total + x.sum(1)
        squares = (x * x).sum(1) if squares is None else squares + (x * x).sum(1)
        n += x.shape[1]
    assert total is not None and squares is not None and n > 0
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > _MIN_STD, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


def imbalance_warnings(counts: dict[str, dict[str, int] | None], threshold: float) -> list[str]:
    """One line per split whose largest class has more than ``threshold`` times the images of its
    smallest, and one per split missing a class."""
    lines = []
    for split, per_class in counts.items():
        if not per_class:
            continue
        missing = [c for c, n in per_class.items() if n == 0]
        if missing:
            lines.append(f"the {split} split has no images of class {', '.join(map(repr, missing))}")
        present = {c: n for c, n in per_class.items() if n > 0}
        if len(present) < 2:
            continue
        big, small = max(present, key=present.__getitem__), min(present, key=present.__getitem__)
        ratio = present[big] / present[small]
        if ratio > threshold:
            lines.append(
                f"class imbalance in {split}: {big!r} has {present[big]} images, {small!r} {present[small]} "
                f"({ratio:.1f}x, above data.imbalance_warning={threshold:g}); consider "
                "training.loss.class_weights=auto"
            )
    return lines


def build_report(result: ScanResult, plan: Plan, counts: dict[str, dict[str, int] | None],
                 preprocess: Preprocessing | None, options: ImageFolderOptions, warnings: list[str]) -> dict[str, Any]:
    """The JSON the run writes as ``data_report.json``::

        layout         "class_folders" | "split_folders" | "manifest"
        source         the folder (data.path) or the CSV (data.manifest), as given
        classes        class names, sorted; a class's index is its position
        files_scanned  files checked by the scan: read and decoded, or unchanged since a cached scan
                       (read and hashed, from a record)
        on_error       "stop" | "skip"
        splits         {"train"|"val"|"test": null (no such split) or
                        {"origin": "given" | "carved" | "recorded" (read from the run's
                         data_splits.csv), "images": N, "per_class": {class: N}}}
        skipped        [{"path", "reason"}]: bad files and leaked copies left out (on_error: skip)
        ignored        [{"path", "reason"}]: hidden and operating-system files, never used
        warnings       one line each: class imbalance, a split without some class
        preprocess     Preprocessing.to_dict(): size, resize, channels, mean, std, resize_size
        cache          "none" | "memory" | "disk"
    """
    splits: dict[str, Any] = {}
    for name in SPLITS:
        per_class = counts[name]
        splits[name] = None if per_class is None else {
            "origin": plan.origins[name], "images": sum(per_class.values()), "per_class": per_class,
        }
    return {
        "layout": result.layout,
        "source": str(result.source),
        "classes": list(result.class_names),
        "files_scanned": result.scanned,
        "on_error": options.image.on_error,
        "splits": splits,
        "skipped": report_entries(result.bad if options.image.on_error == "skip" else []),
        "ignored": report_entries(result.ignored),
        "warnings": list(warnings),
        "preprocess": None if preprocess is None else preprocess.to_dict(),
        "cache": options.image.cache,
    }


def describe(report: dict[str, Any]) -> str:
    """One line: source, layout, classes and images per split."""
    sizes = ", ".join(
        f"{name} {split['images']} ({split['origin']})" for name, split in report["splits"].items() if split
    )
    skipped = f", {len(report['skipped'])} files skipped" if report["skipped"] else ""
    return (f"image_folder {report['source']}: {LAYOUTS[report['layout']]}, {len(report['classes'])} classes; "
            f"{sizes}{skipped}")
