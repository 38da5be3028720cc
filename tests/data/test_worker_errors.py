"""A kiln error raised inside a DataLoader worker process reaches the user as its own message,
not as torch's "Caught ... Original Traceback" wrapper."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.cli.main import main
from kiln.testing.tiny import TINY_OVERRIDES


def test_a_worker_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", *TINY_OVERRIDES, "data.target=tests.data.faulty_files:build", "data.num_workers=1",
                 "model.hidden=[4]", "training.epochs=1", "tracking.backends=[jsonl]", "checkpoint.enabled=false",
                 f"run.output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error: photos/cat_0005.jpg is truncated: re-download it or remove it (in DataLoader worker process" in err
    assert "Original Traceback" not in err and "File " not in err
