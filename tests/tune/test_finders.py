"""The finders leave no trace (weights, optimizer state and every RNG hash the same before and
after), suggest by their stated rules, and write suggestions only into a new config file."""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from kiln.cli.main import main
from kiln.config import load_config
from kiln.errors import MissingExtraError, PathError
from kiln.testing import tiny_config
from kiln.tune import (
    build_workbench,
    find_batch_size,
    lr_range_test,
    plot_lr_finding,
    write_applied,
)
from kiln.tune.batch_size import _search
from kiln.tune.lr_range import SKIP_BEGIN, lr_schedule, smooth, steepest
from kiln.tune.workbench import Workbench

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Workbench:
    """A tiny run's parts, with dropout (so a step draws from torch's RNG) and Adam state (one
    real step taken, so there is optimizer state to keep)."""
    cfg = tiny_config(tmp_path_factory.mktemp("tune"), "model.dropout=0.3", "training.optimizer=adam")
    bench = build_workbench(cfg)
    inputs, targets = bench.task.split_batch(next(iter(bench.loader(32))))
    bench.task.loss(bench.model(inputs), targets).backward()  # type: ignore[no-untyped-call]
    bench.optimizer.step()
    bench.optimizer.zero_grad(set_to_none=True)
    return bench


def fingerprint(bench: Workbench) -> dict[str, str]:
    """sha256 of the weights, the optimizer's state and hyperparameters, and each RNG's state."""
    def digest(*tensors: torch.Tensor | bytes) -> str:
        h = hashlib.sha256()
        for t in tensors:
            h.update(t if isinstance(t, bytes) else t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    opt = bench.optimizer.state_dict()
    states = [v for s in opt["state"].values() for v in s.values() if isinstance(v, torch.Tensor)]
    return {
        "weights": digest(*bench.model.state_dict().values()),
        "optimizer": digest(*states, repr(opt["param_groups"]).encode()),
        "python": digest(repr(random.getstate()).encode()),
        "numpy": digest(repr(np.random.get_state()).encode()),
        "torch": digest(torch.get_rng_state()),
    }


def test_the_lr_range_test_leaves_no_trace(bench: Workbench, tmp_path: Path) -> None:
    before = fingerprint(bench)
    finding = lr_range_test(bench, steps=30)
    assert fingerprint(bench) == before
    assert finding.suggestion is not None and finding.lrs[0] <= finding.suggestion <= finding.lrs[-1]
    assert len(finding.losses) == len(finding.smoothed) == len(finding.lrs) == 30
    png = plot_lr_finding(finding, tmp_path / "plots" / "lr.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_the_batch_size_finder_leaves_no_trace(bench: Workbench) -> None:
    before = fingerprint(bench)
    finding = find_batch_size(bench, max_batch_size=200)
    assert fingerprint(bench) == before
    assert (finding.largest, finding.limited_by) == (200, "--max-batch-size 200")
    assert [t.batch_size for t in finding.tries] == [64, 128, 200]  # from training.batch_size, doubling
    assert all(t.fits and t.peak_bytes for t in finding.tries)


def test_keeping_the_effective_batch_adjusts_grad_accum(tmp_path: Path) -> None:
    bench = build_workbench(tiny_config(tmp_path, "training.batch_size=48", "training.grad_accum=4"))
    kept = find_batch_size(bench, keep_effective_batch=True, max_batch_size=100, steps=1)
    # 192 = 48 x 4; the largest divisor of 192 not above 100 is 96
    assert (kept.largest, kept.batch_size, kept.grad_accum, kept.effective_batch) == (100, 96, 2, 192)
    grown = find_batch_size(bench, max_batch_size=100, steps=1)
    assert (grown.batch_size, grown.grad_accum, grown.effective_batch) == (100, 4, 400)


def test_the_search_finds_the_largest_size_that_fits() -> None:
    tried: list[int] = []

    def fits(size: int) -> bool:
        tried.append(size)
        return size <= 300

    assert _search(fits, 64, 10_000) == (300, 301)
    assert tried[:4] == [64, 128, 256, 512]  # doubling, then bisection between 256 and 512
    assert _search(lambda size: size <= 5, 64, 10_000) == (5, 6)  # halving first
    assert _search(lambda size: True, 64, 1000) == (1000, None)  # the cap fits
    assert _search(lambda size: False, 4, 10) == (0, 1)


def test_the_suggestion_is_the_steepest_descent_of_the_smoothed_loss() -> None:
    lrs = lr_schedule(1e-4, 1.0, 41)
    assert (lrs[0], lrs[-1]) == pytest.approx((1e-4, 1.0))
    assert lrs[20] == pytest.approx(1e-2)  # exponential: the middle step is the geometric mean
    drops = [0.0] * 41
    drops[25] = 1.0  # the loss falls fastest right after step 25
    losses = [5.0 - sum(drops[: i + 1]) for i in range(41)]
    assert steepest(lrs, losses) in (lrs[24], lrs[25])  # numpy.gradient's central difference
    assert steepest(lrs[: SKIP_BEGIN + 2], losses[: SKIP_BEGIN + 2]) is None  # too few points
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # bias-corrected from the start


def test_a_diverging_loss_stops_the_test(tmp_path: Path) -> None:
    bench = build_workbench(tiny_config(tmp_path, "training.optimizer=sgd"))
    finding = lr_range_test(bench, min_lr=1e-3, max_lr=1e4, steps=60)
    assert finding.stopped.startswith("diverged")
    assert len(finding.lrs) < 60
    assert finding.suggestion is not None and finding.suggestion < 10


def test_apply_writes_a_new_config_that_extends_the_old(tmp_path: Path) -> None:
    config = tmp_path / "base.yaml"
    config.write_text("training:\n  lr: 0.5  # my comment\n  epochs: 3\n")
    original = config.read_bytes()
    resolved = load_config(config, ["training.batch_size=16"])
    out = write_applied(tmp_path / "tuned.yaml", config, ["training.batch_size=16"], resolved, {"training.lr": 0.02})
    assert config.read_bytes() == original
    assert yaml.safe_load(out.read_text()) == {"extends": "base.yaml", "training": {"batch_size": 16, "lr": 0.02}}
    tuned = load_config(out)
    assert (tuned.training.lr, tuned.training.batch_size, tuned.training.epochs) == (0.02, 16, 3)
    with pytest.raises(PathError, match=r"tuned\.yaml exists: --apply writes a new config file"):
        write_applied(out, config, [], resolved, {"training.lr": 0.03})
    assert load_config(out).training.lr == 0.02


def test_kiln_tune_lr_prints_plots_and_applies(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = ROOT / "configs" / "digits_mlp.yaml"
    original = config.read_bytes()
    code = main(["tune", "lr", "-c", str(config), "--steps", "25", "--apply", "tuned.yaml",
                 f"run.output_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "suggested training.lr: " in out and "plot: lr_find.png" in out
    suggested = float(out.split("suggested training.lr: ")[1].split()[0])
    assert load_config(tmp_path / "tuned.yaml").training.lr == suggested
    assert (tmp_path / "lr_find.png").is_file()
    assert config.read_bytes() == original


def test_kiln_tune_batch_size_prints_the_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["tune", "batch-size", "--max-batch-size", "100", "--steps", "1", "--keep-effective-batch",
                 *[f"{o}" for o in ("training.batch_size=30", "training.grad_accum=2", f"run.output_dir={tmp_path}")]])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "largest batch that fits: 100 (limited by --max-batch-size 100)" in out
    assert f"use it with: kiln train run.output_dir={tmp_path} training.batch_size=60 training.grad_accum=1" in out


def test_the_plot_needs_the_report_extra(bench: Workbench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    finding = lr_range_test(bench, steps=12)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if matplotlib were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'kiln-ml\[report\]'"):
        plot_lr_finding(finding, tmp_path / "lr.png")
