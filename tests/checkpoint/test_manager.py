"""CheckpointManager: atomic commits, retention, verification and refusal of unsafe files."""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.conftest import require_tool

from kiln.checkpoint import CheckpointManager
from kiln.checkpoint.manifest import sha256_file, write_manifest
from kiln.errors import CheckpointError


def save(manager: CheckpointManager, step: int, value: float | None, size: int = 4) -> Path:
    meta = {"epoch": step, "global_step": step, "batch_in_epoch": 0, "monitor_value": value}
    model = {"w": torch.full((size,), float(step))}
    optimizer = {"state": {0: {"exp_avg": torch.ones(size) * step}}, "param_groups": [{"lr": 0.1}]}
    trainer = {"counters": {"step": step}, "rng": torch.get_rng_state()}
    return manager.save(model, optimizer, trainer, meta)


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=1, keep_last_n=1, mode="min")
    path = save(manager, 3, 0.5)
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "meta.json", "model.safetensors", "optimizer.pt", "trainer.pt"]
    loaded = manager.load_latest()
    assert loaded is not None and loaded.path == path
    assert torch.equal(loaded.model["w"], torch.full((4,), 3.0))
    assert torch.equal(loaded.optimizer["state"][0]["exp_avg"], torch.ones(4) * 3)
    assert torch.equal(loaded.trainer["rng"], torch.get_rng_state())
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["files"]["model.safetensors"]["sha256"] == sha256_file(path / "model.safetensors")


def test_retention_keeps_best_n_last_n_and_newest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=2, keep_last_n=2, mode="min")
    values = [0.9, 0.3, 0.8, 0.1, 0.7, 0.6, 0.5, 0.95, 0.99, 0.98]
    for step, value in enumerate(values, start=1):
        save(manager, step, value)
        remaining = {info.meta["global_step"] for info in manager.committed()}
        best_so_far = min(range(step), key=lambda i: values[i]) + 1
        assert best_so_far in remaining and step in remaining  # never the best or the newest
    assert {info.meta["global_step"] for info in manager.committed()} == {2, 4, 9, 10}


def test_retention_max_mode_and_unscored_checkpoints(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=1, keep_last_n=1, mode="max")
    save(manager, 1, 0.5)
    save(manager, 2, 0.9)
    save(manager, 3, None)  # mid-epoch: no validation metric
    save(manager, 4, None)
    assert {info.meta["global_step"] for info in manager.committed()} == {2, 4}


def test_leftover_tmp_directories_are_ignored_and_cleaned(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, 1, 1, "min")
    good = save(manager, 1, 0.5)
    half = tmp_path / "epoch0002-step00000002.tmp"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"half a file")
    assert [i.path for i in manager.committed()] == [good]
    CheckpointManager(tmp_path, 1, 1, "min")
    assert not half.exists()


def test_async_save_commits_in_background_and_waits(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=3, keep_last_n=3, mode="min", async_save=True)
    live = {"w": torch.zeros(1000)}
    meta = {"epoch": 1, "global_step": 1, "batch_in_epoch": 0, "monitor_value": 1.0}
    path = manager.save(live, {"param_groups": []}, {}, meta)
    live["w"] += 1  # training goes on changing the live tensors
    manager.wait()
    loaded = manager.load(path)
    assert torch.equal(loaded.model["w"], torch.zeros(1000))  # the copy taken at save time
    manager.close()


class Exploit:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("rewrite_manifest", [False, True], ids=["checksum", "weights_only"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, rewrite_manifest: bool) -> None:
    manager = CheckpointManager(tmp_path / "ckpt", 1, 2, "min")
    previous = save(manager, 1, 0.5)
    newest = save(manager, 2, 0.4)
    marker = tmp_path / "pwned"
    with (newest / "optimizer.pt").open("wb") as f:
        pickle.dump({"state": Exploit(marker)}, f)
    if rewrite_manifest:  # an attacker who also fixes the checksums
        (newest / "manifest.json").unlink()
        write_manifest(newest, {"name": newest.name})
    with pytest.raises(CheckpointError) as err:
        manager.load(newest)
    expected = "refused to load optimizer.pt" if rewrite_manifest else "optimizer.pt"
    assert expected in str(err.value)
    loaded = manager.load_latest()
    assert loaded is not None and loaded.path == previous
    assert "optimizer.pt" in loaded.meta["skipped"][0]
    assert not marker.exists()


def test_disk_full_during_save_keeps_previous_checkpoint(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    require_tool(result.returncode == 0, "mounting a small tmpfs needs root (and CAP_SYS_ADMIN in a "
                                         f"container): {result.stderr.decode().strip()}")
    try:
        manager = CheckpointManager(mount / "ckpt", 1, 1, "min")
        previous = save(manager, 1, 0.5, size=10)
        with pytest.raises(CheckpointError, match=r"the disk is full \(ENOSPC\)\n(.*\n)*  intact: epoch0001"):
            save(manager, 2, 0.4, size=200_000)  # 800 kB of weights on a 256 kB disk
        assert [i.path for i in manager.committed()] == [previous]
        assert not list((mount / "ckpt").glob("*.tmp"))
        loaded = manager.load_latest()
        assert loaded is not None and loaded.path == previous
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_file_size_limit_during_save_is_a_clear_error(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, 1, 1, "min")
    previous = save(manager, 1, 0.5, size=10)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, old_limit[1]))
    try:
        with pytest.raises(CheckpointError, match="could not write checkpoint") as err:
            save(manager, 2, 0.4, size=200_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert isinstance(err.value.__cause__, OSError) and err.value.__cause__.errno == errno.EFBIG
    assert [i.path for i in manager.committed()] == [previous]
