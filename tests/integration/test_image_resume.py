"""An image folder with augmentation, trained for real: the same run whatever num_workers is, a
SIGKILL mid-epoch with four workers then ``kiln resume`` ending bit-identical to a run never
killed, and the data report and preview grid in the run directory."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

import kiln
from kiln.runs import read_summary
from kiln.testing import tiny_config
from kiln.testing.chaos import train_with_kills
from kiln.testing.images import write_digits_folder
from kiln.tracking.jsonl import read_events
from kiln.train import Trainer
from tests.conftest import run_cli

AUGMENT = (
    "data.augment=[{name: random_resized_crop, scale: [0.5, 1.0]}, {name: horizontal_flip},"
    " {name: rotation, degrees: 10}, {name: random_erasing, p: 0.3}]"
)
# 2 classes of 14 images: 20 train (5 steps of 4), 4 val, 4 test. A checkpoint every 3 steps and
# none at epoch ends, so the checkpoints a kill leaves are mid-epoch (steps 6, 9, 12: batches 1, 4, 2).
IMAGES = ["data.name=image_folder", "data.image.size=16", AUGMENT, "model.name=mlp", "model.hidden=[16]",
          "model.dropout=0.2", "training.batch_size=4"]
# On a machine with fewer cores than workers (a one-core runner), PyTorch warns; results do not
# depend on it.
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    return write_digits_folder(tmp_path / "photos", classes=2, per_class=14, size=16, formats=("png", "jpg"))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return kiln.load_model(run_dir).state_dict()


def test_same_seed_gives_the_same_run_with_0_and_2_workers(tmp_path: Path, photos: Path) -> None:
    def train(name: str, *overrides: str) -> dict[str, torch.Tensor]:
        cfg = tiny_config(tmp_path / name, *IMAGES, f"data.path={photos}", "checkpoint.enabled=false", *overrides,
                          backends=("jsonl",))
        return _weights(Trainer(cfg, quiet=True).fit().run_dir)

    none, two = train("w0", "data.num_workers=0"), train("w2", "data.num_workers=2")
    assert all(torch.equal(none[k], two[k]) for k in none)
    plain = train("plain", "data.augment=[]", "data.num_workers=0")
    assert not all(torch.equal(none[k], plain[k]) for k in none)  # the augmentation did train


@pytest.mark.slow
def test_sigkill_mid_epoch_with_4_workers_then_resume_is_bit_identical(tmp_path: Path, photos: Path) -> None:
    config = [*IMAGES, f"data.path={photos}", "data.num_workers=4", "run.name=images", "run.deterministic=true",
              "run.progress=false", "training.epochs=6", "checkpoint.every_n_epochs=null",
              "checkpoint.every_n_steps=3", "checkpoint.keep_last_n=2", "tracking.backends=[csv]"]
    reference = run_cli("train", *config, f"run.output_dir={tmp_path / 'reference'}", "--quiet")
    assert reference.returncode == 0, reference.stderr
    (straight,) = (tmp_path / "reference").iterdir()

    # killed once a checkpoint at step 6 or later is committed (a few ms later: mid-batch, workers busy)
    report = train_with_kills(config, tmp_path / "killed", kills=1, rng=random.Random(18), steps=(6, 6),
                              startup_share=0.0)
    assert report.kills == 1
    resumed = [e for e in read_events(report.run_dir / "logs" / "events.jsonl") if e["event"] == "resumed"]
    assert resumed and all(e["batch_in_epoch"] > 0 for e in resumed)  # it continued mid-epoch
    a, b = _weights(straight), _weights(report.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_summary(report.run_dir).test == read_summary(straight).test

    # what a new run writes beside its config: the data report and the preview, logged as an artifact
    data_report = json.loads((straight / "data_report.json").read_text())
    assert data_report["splits"]["train"]["per_class"] == {"digit_0": 10, "digit_1": 10}
    with Image.open(straight / "preview.png") as preview:
        assert preview.format == "PNG" and preview.size == (8 * 66 + 2, 3 * 80 + 2)  # 20 samples, 64+14 px cells
    artifacts = [e["path"] for e in read_events(straight / "logs" / "events.jsonl") if e["event"] == "artifact"]
    assert str(straight / "preview.png") in artifacts
    assert (report.run_dir / "preview.png").is_file()
