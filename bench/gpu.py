"""kiln on a CUDA GPU: what mixed precision costs in accuracy, what it and torch.compile buy in
speed, and what kiln's loop costs over a hand-written one. Issue 21's figures, to be recorded in
bench/README.md with the card's name.

1. Accuracy: ``configs/mnist_cnn_enhanced.yaml`` on synthetic 1x28x28 data (``data.name:
   synthetic``, no download), trained in fp32, bf16 and fp16 (with its loss scaler); the test
   accuracy of each, and its distance from fp32 in points (target: within 0.3).
2. Speed: a character transformer (d_model 512, 8 layers, 8 heads, block 256, batch 32) trained
   by ``kiln.Trainer`` for ``--steps`` steps in fp32, bf16, and bf16 + ``training.compile=default``;
   optimizer steps per second after ``--warmup`` steps (compilation happens in those).
3. Overhead: the reference MLP (``configs/mnist_mlp.yaml``'s) and CNN (``mnist_cnn_baseline``'s)
   on the same synthetic data, one epoch of kiln's loop against one epoch of a hand-written CUDA
   loop (pinned DataLoader, non-blocking copies, the same model, optimizer and batch), the second
   epoch of each timed; the ratio kiln / hand (target: at most 1.05).

    .venv/bin/python bench/gpu.py                    # on a CUDA machine, a few minutes
    .venv/bin/python bench/gpu.py --dry-run          # anywhere: tiny sizes on the CPU, checks the script

Without CUDA it refuses (exit 2): CPU figures are not what it measures. ``--dry-run`` runs every
section with tiny sizes on the CPU (or on ``--device cuda``) and prints the same tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from kiln.config import load_config
from kiln.config.schema import KilnConfig
from kiln.data import build_data
from kiln.errors import ConfigError
from kiln.models.build import build_model
from kiln.train import Callback, Trainer, TrainState
from kiln.train.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
TARGET_POINTS = 0.3  # accuracy distance from fp32, in percentage points
TARGET_RATIO = 1.05  # kiln's epoch over the hand-written loop's


@dataclass(frozen=True)
class Sizes:
    samples: int  # synthetic images
    epochs: int  # accuracy runs
    d_model: int
    layers: int
    heads: int
    block: int
    batch: int  # transformer windows per step
    steps: int
    warmup: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(samples=20_000, epochs=5, d_model=512, layers=8, heads=8, block=256, batch=32,
                   steps=60, warmup=20)

    @classmethod
    def tiny(cls) -> Sizes:
        return cls(samples=600, epochs=1, d_model=32, layers=1, heads=2, block=16, batch=4, steps=6, warmup=2)


def synthetic(sizes: Sizes, out: Path, device: str, *overrides: str) -> list[str]:
    return ["data.name=synthetic", f"data.synthetic.n_samples={sizes.samples}", "data.synthetic.noise=1.0",
            f"run.device={device}", f"run.output_dir={out}", "run.progress=false", "run.deterministic=false",
            "checkpoint.enabled=false", "tracking.backends=[jsonl]", "tracking.system_metrics=false",
            "tracking.log_model=false", *overrides]


def accuracy(sizes: Sizes, out: Path, device: str) -> dict[str, Any]:
    """Test accuracy per precision, and the distance from fp32 in points."""
    rows: dict[str, Any] = {}
    for precision in ("fp32", "bf16", "fp16"):
        try:
            cfg = load_config(ROOT / "configs" / "mnist_cnn_enhanced.yaml", synthetic(
                sizes, out / precision, device, f"training.precision={precision}", f"training.epochs={sizes.epochs}"))
        except ConfigError as exc:  # a kiln without this precision: said, not hidden
            rows[precision] = {"error": str(exc).splitlines()[0]}
            continue
        result = Trainer(cfg, quiet=True, handle_signals=False).fit()
        rows[precision] = {"test_accuracy": result.test_metrics["test_accuracy"]}
    base = rows["fp32"].get("test_accuracy")
    for row in rows.values():
        if "test_accuracy" in row and base is not None:
            row["points_from_fp32"] = round(100 * (row["test_accuracy"] - base), 3)
            row["within_target"] = abs(row["points_from_fp32"]) <= TARGET_POINTS
    return rows


class StepClock(Callback):
    """Times optimizer steps after ``warmup`` of them."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device, self.start, self.end, self.steps = warmup, device, 0.0, 0.0, 0

    def _now(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()  # the bench's own clock, not kiln's loop
        return time.perf_counter()

    def on_batch_end(self, state: TrainState) -> None:
        if not state.optimizer_stepped:
            return
        if state.global_step == self.warmup:
            self.start = self._now()
        elif state.global_step > self.warmup:
            self.end, self.steps = self._now(), state.global_step - self.warmup


def transformer_speed(sizes: Sizes, out: Path, device: str) -> dict[str, Any]:
    """Optimizer steps per second of the char transformer per mode."""
    out.mkdir(parents=True, exist_ok=True)
    text = out / "text.txt"
    words = ["the", "king", "shall", "not", "be", "moved", "what", "say", "you", "my", "lord", "to", "be", "or", "not", "to", "be", "that", "is", "the", "question", "now", "is", "the", "winter", "of", "our", "discontent"]
    g = torch.Generator().manual_seed(0)
    text.write_text(" ".join(words[i] for i in torch.randint(len(words), (60_000,), generator=g).tolist()))
    rows: dict[str, Any] = {}
    for mode, extra in (("fp32", ["training.precision=fp32"]), ("bf16", ["training.precision=bf16"]),
                        ("bf16+compile", ["training.precision=bf16", "training.compile=default"])):
        try:
            cfg = load_config(None, [
                "run.name=bench_gpu_lm", f"run.device={device}", f"run.output_dir={out / mode}",
                "run.progress=false", "run.deterministic=false", "data.name=text", f"data.path={text}",
                f"data.text.block_size={sizes.block}", "data.val_fraction=0.01", "data.test_fraction=0",
                "model.name=transformer", f"model.d_model={sizes.d_model}", f"model.n_heads={sizes.heads}",
                f"model.n_layers={sizes.layers}", f"training.max_steps={sizes.steps}",
                f"training.batch_size={sizes.batch}", "training.eval_batches=1", "training.optimizer=adamw",
                "training.lr=1e-3", "checkpoint.enabled=false", "tracking.backends=[jsonl]",
                "tracking.system_metrics=false", "tracking.log_model=false", *extra])
        except ConfigError as exc:
            rows[mode] = {"error": str(exc).splitlines()[0]}
            continue
        clock = StepClock(sizes.warmup, device)
        Trainer(cfg, callbacks=[clock], quiet=True, handle_signals=False).fit()
        rows[mode] = {"steps_per_sec": round(clock.steps / (clock.end - clock.start), 3)}
    return rows


def hand_epoch_seconds(cfg: KilnConfig, device: torch.device) -> float:
    """The second epoch of a hand-written loop over the same model, data, optimizer and batch."""
    torch.manual_seed(cfg.run.seed)
    data = build_data(cfg.data, cfg.run.seed)
    model = build_model(cfg.model, data.spec).to(device)
    optimizer = build_optimizer(model, cfg.training)
    loader = torch.utils.data.DataLoader(data.train, batch_size=cfg.training.batch_size, shuffle=True,
                                         pin_memory=device.type == "cuda")
    seconds = 0.0
    for _ in range(2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.train()
        for inputs, targets in loader:
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            loss = F.cross_entropy(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds


class EpochClock(Callback):
    """The training part of each epoch (validation excluded), as the hand loop times it."""

    def __init__(self, device: str) -> None:
        self.device, self.start, self.seconds = device, 0.0, [0.0]

    def on_epoch_start(self, state: TrainState) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_validation_start(self, state: TrainState) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self.start)


def loop_overhead(sizes: Sizes, out: Path, device: str) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, config, extra in (("mlp", "mnist_mlp.yaml", ["training.l2=0", "training.early_stopping=null", "data.subset=null"]),
                                ("cnn", "mnist_cnn_baseline.yaml", [])):
        cfg = load_config(ROOT / "configs" / config, synthetic(
            sizes, out / name, device, "training.epochs=2", "data.val_fraction=0.1", "data.test_fraction=0.1",
            "tracking.log_every_n_steps=50", "model.dropout=0", *extra))
        clock = EpochClock(device)
        Trainer(cfg, callbacks=[clock], quiet=True, handle_signals=False).fit()
        kiln_s, hand_s = clock.seconds[-1], hand_epoch_seconds(cfg, torch.device(device))
        rows[name] = {"kiln_epoch_s": round(kiln_s, 4), "hand_epoch_s": round(hand_s, 4),
                      "ratio": round(kiln_s / hand_s, 3), "within_target": kiln_s / hand_s <= TARGET_RATIO}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes: check the script, measure nothing")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    device = "cpu" if args.dry_run and args.device == "cpu" else args.device
    if args.dry_run and not torch.cuda.is_available():
        device = "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py measures a CUDA GPU and this machine has none (torch.cuda.is_available() is "
              "False); its figures stay to be measured on one. `--dry-run` checks the script here with "
              "tiny sizes on the CPU.", file=sys.stderr)
        return 2
    if device == "cpu" and not args.dry_run:
        print("bench/gpu.py --device cpu runs only with --dry-run: CPU figures are not what it measures",
              file=sys.stderr)
        return 2
    sizes = Sizes.tiny() if args.dry_run else Sizes.full()
    card = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run: no figure is meaningful)"
    figures: dict[str, Any] = {"device": card, "torch": torch.__version__, "dry_run": args.dry_run}
    with tempfile.TemporaryDirectory(prefix="kiln-bench-gpu-") as tmp:
        out = Path(tmp)
        for name, section in (("accuracy", accuracy), ("transformer_steps_per_sec", transformer_speed),
                              ("loop_overhead", loop_overhead)):
            started = time.perf_counter()
            figures[name] = section(sizes, out / name, device)
            print(f"{name} ({time.perf_counter() - started:.0f} s):", json.dumps(figures[name], indent=2), flush=True)
    print(f"device: {card}; torch {torch.__version__}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
