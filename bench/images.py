"""kiln's image_folder pipeline against the hand-written torchvision one, and a ResNet18 epoch.

The images are real JPEG files on disk: scikit-learn's digits written at ``--file-size`` pixels
(``kiln.testing.write_digits_folder``, 1,797 files in 10 class folders), decoded lazily by both
sides. Both sides apply the same steps: decode to RGB, shorter side to 64 then a 64x64 centre crop,
``RandomResizedCrop(64, scale=(0.08, 1))``, ``RandomHorizontalFlip``, scale to 0..1 and ImageNet
normalization (torchvision.transforms.v2), in batches of 64 shuffled, with the same
``--workers`` worker processes (persistent).

* **pipeline**: images per second over one epoch of the loader alone (no model), after one
  warm-up epoch (the workers' start). In each round the loaders are built side by side and their
  measured epochs interleaved (one epoch of each in turn, the order rotating), so that the
  epochs compared ran seconds apart: whole runs one after the other drift by +-15 % on a busy VM.
  Hand-written: ``torchvision.datasets.ImageFolder`` + ``DataLoader(shuffle=True)``. kiln: ``build_data`` of ``data.name: image_folder`` (every file in
  the training split) and the loader and keyed ``EpochSampler`` the trainer builds. Target: kiln at
  least 1.0x the hand-written rate.
* **cache**: kiln with ``data.image.cache: memory``; its rate after the warm-up epoch (which fills
  the cache) over the uncached kiln rate, interleaved with the other two. Target: at least 3x.
* **resnet18**: one training epoch of a torchvision ResNet18 (random init, 10 classes) at 64x64,
  Adam 1e-3, cross-entropy: ``Trainer.fit`` (events.jsonl and CSV, checkpointing off, no
  validation split) against a hand-written loop over the hand-written loader. Target: kiln at
  most 1.02x the hand-written epoch.

Sides alternate every round (the order rotates); medians and the median of the per-round ratios
with its 95 % bootstrap interval (``bench/stats.py``) decide each verdict. Run it with nothing else
on the machine:

    .venv/bin/python bench/images.py                      # all three, 5 rounds
    .venv/bin/python bench/images.py --parts pipeline,cache --rounds 7
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from overhead import EpochClock  # bench/overhead.py (this folder is on sys.path)
from stats import median_ci, verdict  # bench/stats.py

from kiln._vision import torchvision
from kiln.config import load_config
from kiln.data.build import build_data
from kiln.data.loader import make_loader
from kiln.testing.images import write_digits_folder
from kiln.train import Trainer
from kiln.train.sampler import EpochSampler

SIZE, BATCH, LR, SEED = 64, 64, 1e-3, 0
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TARGETS = {"pipeline": 1.0, "cache": 3.0, "resnet18": 1.02}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def kiln_overrides(root: Path, out: Path, workers: int, cache: str = "none") -> list[str]:
    return [
        "run.name=bench_images", f"run.output_dir={out}", f"run.seed={SEED}", "run.progress=false",
        "data.name=image_folder", f"data.path={root}", "data.val_fraction=0", "data.test_fraction=0",
        f"data.num_workers={workers}", f"data.image.size={SIZE}", "data.image.channels=3",
        "data.image.mean=imagenet", "data.image.std=imagenet", f"data.image.cache={cache}",
        "data.augment=[{name: random_resized_crop, scale: [0.08, 1.0]}, {name: horizontal_flip}]",
        f"training.batch_size={BATCH}", f"training.lr={LR}", "training.optimizer=adam",
        "tracking.backends=[jsonl,csv]", "tracking.system_metrics=false", "checkpoint.enabled=false",
    ]


def hand_loader(root: Path, workers: int) -> Any:
    """What a careful engineer writes by hand: ImageFolder + v2 transforms + DataLoader."""
    torchvision()
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.PILToTensor(), v2.Resize(SIZE, antialias=True), v2.CenterCrop(SIZE),
        v2.RandomResizedCrop(SIZE, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD),
    ])
    dataset = ImageFolder(str(root), transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0)


def kiln_loader(root: Path, out: Path, workers: int, cache: str) -> tuple[Any, EpochSampler]:
    cfg = load_config(None, kiln_overrides(root, out, workers, cache))
    bundle = build_data(cfg.data, cfg.run.seed)
    sampler = EpochSampler(len(bundle.train), SEED, keyed=getattr(bundle.train, "epoch_keys", False))  # type: ignore[arg-type]
    loader = make_loader(bundle.train, BATCH, workers, sampler, persistent_workers=workers > 0)
    return loader, sampler


def kiln_epochs(root: Path, out: Path, workers: int, cache: str) -> tuple[Any, Callable[[int], None]]:
    """kiln's loader and the epoch setter its sampler needs (augmentation keyed by epoch)."""
    loader, sampler = kiln_loader(root, out, workers, cache)
    return loader, sampler.set_epoch


def epoch_rates(loader: Any, epochs: int, set_epoch: Callable[[int], None] | None = None) -> list[float]:
    """Images per second of each epoch of ``loader``."""
    rates = []
    for epoch in range(epochs):
        if set_epoch is not None:
            set_epoch(epoch)
        start, seen = time.perf_counter(), 0
        for x, _ in loader:
            seen += len(x)
        rates.append(seen / (time.perf_counter() - start))
    return rates


def interleaved_rates(loaders: dict[str, tuple[Any, Callable[[int], None] | None]], epochs: int,
                      first: int = 0) -> dict[str, float]:
    """Each loader's median images/s over ``epochs`` epochs, its epochs interleaved with the
    others' (one epoch of each in turn, the order rotating from ``first``), after one warm-up
    epoch each (workers started, caches filled). Adjacent epochs share the machine's mood, so
    the ratios are steadier than whole runs measured one after the other on a noisy VM."""
    names = list(loaders)
    for name in names:
        loader, set_epoch = loaders[name]
        epoch_rates(loader, 1, set_epoch)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for epoch in range(1, epochs + 1):
        turn = (first + epoch) % len(names)
        for name in names[turn:] + names[:turn]:
            loader, set_epoch = loaders[name]
            if set_epoch is not None:
                set_epoch(epoch)
            rates[name] += epoch_rates(loader, 1)
    return {name: statistics.median(values) for name, values in rates.items()}


def hand_resnet_epochs(root: Path, workers: int, epochs: int) -> list[float]:
    tv = torchvision()
    torch.manual_seed(SEED)
    model = tv.models.resnet18(num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    loader = hand_loader(root, workers)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        total = torch.zeros(())
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        float(total)
        seconds.append(time.perf_counter() - start)
    return seconds


def kiln_resnet_epochs(root: Path, out: Path, workers: int, epochs: int) -> list[float]:
    cfg = load_config(None, [*kiln_overrides(root, out, workers), "model.name=torchvision",
                             "model.arch=resnet18", f"training.epochs={epochs}"])
    clock = EpochClock()
    Trainer(cfg, quiet=True, callbacks=[clock]).fit()
    return clock.seconds


def summarize(name: str, kiln: list[float], hand: list[float], higher_is_better: bool) -> str:
    """One table row: medians, ratio of medians, per-round ratio median with its interval."""
    ratios = [k / h for k, h in zip(kiln, hand, strict=True)]
    median = statistics.median(ratios)
    low, high = median_ci(ratios)
    target = TARGETS[name]
    if higher_is_better:  # a rate: the target is a floor; verdict() takes a ceiling
        answer = verdict(-median, -high, -low, -target)
    else:
        answer = verdict(median, low, high, target)
    return (f"| {name} | {statistics.median(kiln):.1f} | {statistics.median(hand):.1f} | "
            f"{statistics.median(kiln) / statistics.median(hand):.3f} | {median:.3f} [{low:.3f}, {high:.3f}] | "
            f"{'>=' if higher_is_better else '<='} {target} | {answer} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="pipeline,cache,resnet18")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3,
                        help="measured epochs per loader and round (after one warm-up epoch; resnet18: the first is dropped)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--file-size", type=int, default=160, help="side of the JPEG files written")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_digits_folder(Path(tmp) / "images", size=args.file_size, formats=("jpg",))
        out = Path(tmp) / "runs"
        results: dict[str, tuple[list[float], list[float]]] = {p: ([], []) for p in parts}
        for r in range(args.rounds):
            if "pipeline" in parts or "cache" in parts:
                loaders: dict[str, tuple[Any, Callable[[int], None] | None]] = {
                    "hand": (hand_loader(root, args.workers), None),
                    "kiln": kiln_epochs(root, out, args.workers, "none"),
                }
                if "cache" in parts:
                    loaders["cache"] = kiln_epochs(root, out, args.workers, "memory")
                measured = interleaved_rates(loaders, args.epochs, first=r)
                log(f"round {r}: " + ", ".join(f"{k} {v:.0f}" for k, v in measured.items()) + " images/s")
                if "pipeline" in parts:
                    results["pipeline"][0].append(measured["kiln"])
                    results["pipeline"][1].append(measured["hand"])
                if "cache" in parts:
                    results["cache"][0].append(measured["cache"])
                    results["cache"][1].append(measured["kiln"])
                del loaders  # their persistent workers exit
            if "resnet18" in parts:
                pair = [("hand", lambda: statistics.median(hand_resnet_epochs(root, args.workers, args.epochs)[1:])),
                        ("kiln", lambda: statistics.median(kiln_resnet_epochs(root, out, args.workers, args.epochs)[1:]))]
                seconds = {}
                for label, run in (pair if r % 2 == 0 else pair[::-1]):
                    seconds[label] = run()
                    log(f"round {r}: resnet18 {label} {seconds[label]:.2f} s/epoch")
                results["resnet18"][0].append(seconds["kiln"])
                results["resnet18"][1].append(seconds["hand"])
        for part in parts:
            kiln, other = results[part]
            rows.append(summarize(part, kiln, other, higher_is_better=part != "resnet18"))
    print(f"Measured {datetime.now():%Y-%m-%d} on {platform.machine()} {platform.processor() or ''}, "
          f"{args.rounds} rounds, {args.workers} workers, {args.threads} torch threads, torch {torch.__version__}\n")
    print("| part | kiln (median) | reference (median) | ratio of medians | per-round ratio, 95% CI | target | met |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\npipeline and cache: images/s (cache: kiln cached over kiln uncached); resnet18: s/epoch")


if __name__ == "__main__":
    main()
