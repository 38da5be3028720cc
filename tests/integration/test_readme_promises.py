"""Promises the README makes in so many words, each held to what it says."""

from __future__ import annotations

import json
import os
import shutil
import signal
from datetime import datetime
from pathlib import Path

import pytest
from safetensors.torch import load_file

from kiln.cli.main import main
from kiln.runs.layout import create_run_dir
from kiln.testing import tiny_config
from kiln.train import Callback, Trainer, TrainState
from kiln.train.trainer import TrainingInterrupted

ROOT = Path(__file__).resolve().parents[2]


class SigtermAfterBatch(Callback):
    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_batch_end(self, state: TrainState) -> None:
        if (state.epoch, state.batch_in_epoch) == (0, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run stopped by a real SIGTERM after batch 7 of its first epoch (checkpoint written)."""
    output = tmp_path_factory.mktemp("interrupted")
    cfg = tiny_config(output, "tracking.system_metrics=false", backends=("jsonl",))
    with pytest.raises(TrainingInterrupted):
        Trainer(cfg, callbacks=[SigtermAfterBatch(7)], quiet=True).fit()
    (run_dir,) = output.iterdir()
    return run_dir


def copy_of(run_dir: Path, where: Path) -> Path:
    return Path(shutil.copytree(run_dir, where / run_dir.name))


def test_resume_with_a_changed_config_is_refused_with_the_differences_and_exit_2(
    interrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_of(interrupted, tmp_path)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    for verb in (["resume", str(run_dir)], ["train", "--resume", str(run_dir)]):
        assert main([*verb, "training.lr=0.1", "--quiet"]) == 2
        captured = capsys.readouterr()
        assert captured.err == (
            f"error: refusing to resume {run_dir.name} with a changed config; these changes would make "
            "the resumed run differ from the one that was started:\n"
            "  - training.lr: 0.01 -> 0.1\n"
            "Pass --allow-config-change to resume anyway.\n"
        ), verb
        assert "resuming" not in captured.out
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # nothing touched
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"


def test_train_dash_dash_resume_does_what_kiln_resume_does(
    interrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    by_resume = copy_of(interrupted, tmp_path / "a")
    by_train = copy_of(interrupted, tmp_path / "b")
    checkpoint = "epoch0000-step00000007-batch00007"
    assert main(["resume", str(by_resume), "--quiet"]) == 0
    assert f"resuming {by_resume} from checkpoint {checkpoint}" in capsys.readouterr().out
    assert main(["train", "--resume", str(by_train), "--quiet"]) == 0
    assert f"resuming {by_train} from checkpoint {checkpoint}" in capsys.readouterr().out

    a, b = (json.loads((run / "summary.json").read_text()) for run in (by_resume, by_train))
    assert a["status"] == b["status"] == "completed" and a["epochs_trained"] == b["epochs_trained"] == 2
    timing = ("epoch_time", "samples_per_sec")
    assert {k: v for k, v in a["final"].items() if k not in timing} == {
        k: v for k, v in b["final"].items() if k not in timing}
    assert a["test"] == b["test"] and a["global_step"] == b["global_step"] == 42
    weights_a = load_file(str(by_resume / "models/model.safetensors"))
    weights_b = load_file(str(by_train / "models/model.safetensors"))
    assert weights_a.keys() == weights_b.keys()
    assert all(weights_a[k].equal(weights_b[k]) for k in weights_a)
    assert not any(p.name.startswith("tiny_") for p in (tmp_path / "b").iterdir() if p != by_train)  # no new run


def test_a_run_directory_name_collision_gets_a_suffix_never_an_overwrite(tmp_path: Path) -> None:
    now = datetime(2026, 11, 23, 12, 13, 28)
    first = create_run_dir(tmp_path, "digits_mlp", now=now)
    (first.root / "summary.json").write_text("{}")
    second = create_run_dir(tmp_path, "digits_mlp", now=now)
    third = create_run_dir(tmp_path, "digits_mlp", now=now)
    assert [p.root.name for p in (first, second, third)] == [
        "digits_mlp_20261123_121328", "digits_mlp_20261123_121328_2", "digits_mlp_20261123_121328_3",
    ]
    assert (first.root / "summary.json").read_text() == "{}"
    assert sorted(p.name for p in second.root.iterdir()) == ["logs", "models"]  # a fresh, empty run


@pytest.mark.slow
def test_the_shipped_default_config_reaches_about_098_test_accuracy(tmp_path: Path) -> None:
    """README: `kiln train -c configs/digits_mlp.yaml` ends with a test accuracy of about 0.98
    (0.9805 in its pasted run; 360 test samples, so one sample is 0.0028)."""
    from kiln.config import load_config

    cfg = load_config(ROOT / "configs/digits_mlp.yaml", [
        f"run.output_dir={tmp_path}", "run.progress=false", "tracking.backends=[jsonl]",
        "tracking.system_metrics=false",
    ])
    result = Trainer(cfg, quiet=True).fit()
    assert result.status in ("completed", "stopped_early")
    assert result.test_metrics["test_accuracy"] >= 0.97, result.test_metrics
