"""Resuming a backbone run needs its checkpoint, not its starting weights: on a requeued node the
weights file may be gone, or the pretrained cache empty."""

from __future__ import annotations

from pathlib import Path

import torch
from tests.conftest import run_cli

from kiln._vision import torchvision


def test_a_resume_does_not_load_the_starting_weights_again(tmp_path: Path) -> None:
    tv = torchvision()
    torch.manual_seed(0)
    weights = tmp_path / "start.pth"
    torch.save(tv.models.resnet18().state_dict(), weights)
    first = run_cli(
        "train", "run.name=rw", f"run.output_dir={tmp_path / 'runs'}", "run.progress=false", "data.name=synthetic",
        "data.synthetic.input_shape=[3,16,16]", "data.synthetic.n_samples=64", "data.synthetic.num_classes=2",
        "model.name=torchvision", "model.arch=resnet18", f"model.weights={weights}", "training.epochs=1",
        "tracking.backends=[jsonl]", "--quiet",
    )
    assert first.returncode == 0, first.stderr
    weights.rename(tmp_path / "moved.pth")  # the starting weights are not on this machine any more
    (run_dir,) = (tmp_path / "runs").iterdir()
    resumed = run_cli("resume", str(run_dir), "training.epochs=2", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "epochs trained       │ 2 / 2" in resumed.stdout
