"""Tokens per second of kiln's loop against a hand-written loop, for the character transformer.

Both sides train the identical ``TransformerLM`` (kiln's model catalog, same seed, same initial
weights) on the identical text windows (kiln's ``text`` dataset), batch ``--batch`` windows of
``--block`` characters, AdamW with the warm-up/cosine schedule and gradient clipping at 1.0:

* hand-written: the loop nanoGPT's ``train.py`` has on a CPU: random window starts from a seeded
  ``torch.Generator``, forward, cross-entropy, backward, ``clip_grad_norm_``, step, scheduler step;
* kiln: ``Trainer(cfg).fit()`` with ``training.max_steps``, the events.jsonl and CSV trackers,
  per-step logging of loss, lr and grad norm, system metrics; checkpointing and step evaluations
  off (the hand-written loop does neither).

What is timed: steps ``--warmup``+1 to ``--steps`` (the first ones warm up the allocator), from
``perf_counter`` at the end of step ``--warmup`` to the end of the last step; tokens/s is
``(steps - warmup) * batch * block`` over that time. The sides alternate in one process, the
order flipping every round, ``torch.set_num_threads`` fixed. Reported: the median tokens/s of
each side, the ratio of the medians, and the median and quartiles of the per-round ratios.

    .venv/bin/python bench/lm.py                     # defaults below, ~2 minutes on 2 idle cores
    .venv/bin/python bench/lm.py --rounds 7 --steps 120 --text data/shakespeare/input.txt
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from kiln.config import load_config
from kiln.config.schema import KilnConfig
from kiln.data import build_data
from kiln.models.build import build_model
from kiln.train import Callback, Trainer, TrainState
from kiln.train.optim import build_optimizer, build_scheduler

PHRASES = ("the king shall not be moved; what say you, my lord? to be or not to be, that is the "
           "question. o romeo, romeo, wherefore art thou romeo? now is the winter of our discontent")


def make_text(path: Path, chars: int) -> Path:
    """A deterministic pseudo-English text (for when no real text file is given)."""
    g = torch.Generator().manual_seed(0)
    vocab = PHRASES.split(" ")
    words = [vocab[i] for i in torch.randint(len(vocab), (chars // 4,), generator=g).tolist()]
    path.write_text(" ".join(words)[:chars], encoding="utf-8")
    return path


def make_config(args: argparse.Namespace, text: Path, out: Path) -> KilnConfig:
    return load_config(None, [
        "run.name=bench_lm", "run.progress=false", f"run.output_dir={out}",
        "data.name=text", f"data.path={text}", f"data.text.block_size={args.block}",
        "data.val_fraction=0.05", "data.test_fraction=0",
        "model.name=transformer", f"model.d_model={args.d_model}", "model.n_heads=4",
        f"model.n_layers={args.layers}", "model.dropout=0.0",
        f"training.max_steps={args.steps}", f"training.batch_size={args.batch}",
        "training.eval_batches=1", "training.optimizer=adamw", "training.lr=2e-3",
        "training.grad_clip=1.0", "training.scheduler.name=warmup_cosine",
        "training.scheduler.warmup_steps=10", "checkpoint.enabled=false",
        "tracking.backends=[jsonl,csv]", "tracking.log_every_n_steps=1",
    ])


class StepClock(Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_batch_end(self, state: TrainState) -> None:
        if state.optimizer_stepped and state.global_step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def run_kiln(cfg: KilnConfig, args: argparse.Namespace) -> float:
    clock = StepClock(args.warmup)
    Trainer(cfg, callbacks=[clock], quiet=True, handle_signals=False).fit()
    tokens: int = (args.steps - args.warmup) * args.batch * args.block
    return tokens / (clock.end - clock.start)


def run_hand(cfg: KilnConfig, args: argparse.Namespace) -> float:
    torch.manual_seed(cfg.run.seed)
    data = build_data(cfg.data, cfg.run.seed)
    model = build_model(cfg.model, data.spec)
    ids = data.train.ids  # type: ignore[attr-defined]
    optimizer = build_optimizer(model, cfg.training)
    scheduler = build_scheduler(optimizer, cfg.training.scheduler, args.steps)
    assert scheduler is not None
    g = torch.Generator().manual_seed(cfg.run.seed)
    offsets = torch.arange(args.block)
    model.train()
    start = 0.0
    for step in range(1, args.steps + 1):
        starts = torch.randint(len(ids) - args.block, (args.batch,), generator=g)
        x, y = ids[starts[:, None] + offsets], ids[starts[:, None] + offsets + 1]
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        _ = loss.item()  # the loss a notebook prints; kiln logs it every step here too
        if step == args.warmup:
            start = time.perf_counter()
    tokens: int = (args.steps - args.warmup) * args.batch * args.block
    return tokens / (time.perf_counter() - start)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--text", type=Path, help="a UTF-8 text file (default: generated, 300k chars)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        text = args.text or make_text(Path(tmp) / "text.txt", 300_000)
        cfg = make_config(args, text, Path(tmp) / "runs")
        kiln_tps: list[float] = []
        hand_tps: list[float] = []
        for r in range(args.rounds):
            sides = [("kiln", run_kiln, kiln_tps), ("hand", run_hand, hand_tps)]
            for name, fn, out in sides if r % 2 == 0 else sides[::-1]:
                out.append(fn(cfg, args))
                print(f"round {r + 1} {name}: {out[-1]:,.0f} tokens/s  (load {os.getloadavg()[0]:.2f})",
                      file=sys.stderr)
    ratios = [k / h for k, h in zip(kiln_tps, hand_tps, strict=True)]
    q1, med, q3 = quartiles(ratios)
    print(f"| model | threads | rounds | hand-written tokens/s | kiln tokens/s | ratio of medians | per-round ratio median [q1, q3] |\n"
          f"|---|---|---|---|---|---|---|\n"
          f"| d_model {args.d_model}, {args.layers} layers, block {args.block}, batch {args.batch} "
          f"| {args.threads} | {args.rounds} | {statistics.median(hand_tps):,.0f} | {statistics.median(kiln_tps):,.0f} "
          f"| {statistics.median(kiln_tps) / statistics.median(hand_tps):.3f} | {med:.3f} [{q1:.3f}, {q3:.3f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
