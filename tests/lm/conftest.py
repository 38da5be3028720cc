"""A small text the model can learn (a repeated sentence) and a tiny step-based LM config."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from kiln.config import load_config
from kiln.config.schema import KilnConfig

SENTENCE = "the cat sat on the mat. "


def write_text(directory: Path, repeats: int = 120) -> Path:
    path = directory / "pattern.txt"
    path.write_text(SENTENCE * repeats, encoding="utf-8")
    return path


def lm_config(
    output_dir: Path, text: Path, *overrides: str, backends: Sequence[str] = ("jsonl", "csv")
) -> KilnConfig:
    """A ~10k-parameter transformer on ``text``, step-based, deterministic kernels."""
    return load_config(None, [
        "run.name=lm", "run.progress=false", "run.deterministic=true", f"run.output_dir={output_dir}",
        "data.name=text", f"data.path={text}", "data.text.block_size=16",
        "data.val_fraction=0.1", "data.test_fraction=0.1",
        "model.name=transformer", "model.d_model=32", "model.n_heads=2", "model.n_layers=2",
        "model.d_ff=64",
        "training.max_steps=120", "training.eval_every_n_steps=40", "training.eval_batches=2",
        "training.batch_size=16", "training.eval_batch_size=32", "training.optimizer=adamw",
        "training.lr=3e-3", "training.grad_clip=1.0",
        "training.scheduler.name=warmup_cosine", "training.scheduler.warmup_steps=10",
        f"tracking.backends={list(backends)}", "tracking.log_every_n_steps=1",
        *overrides,
    ])


@pytest.fixture(scope="package", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a shared 2-core machine the threads of each
    small op wait for each other: one thread runs these tests several times faster."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished LM run shared by the tests that only read it."""
    from kiln.train import Trainer

    root = tmp_path_factory.mktemp("lm")
    result = Trainer(lm_config(root / "runs", write_text(root)), quiet=True).fit()
    assert result.status == "completed"
    return result.run_dir
