"""Rank 0's checkpoint choice is the one every rank resumes from: two real processes in a gloo
group, each given its own copy of a run directory whose checkpoints differ (as on nodes without a
shared filesystem, or with a checkpoint written between two ranks' reads)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kiln.testing.tiny import tiny_config
from kiln.train import Trainer
from tests.conftest import ROOT
from tests.distributed.conftest import env_for


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unfinished run with several checkpoints (summary.json removed, as after a crash)."""
    out = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(out, "checkpoint.every_n_steps=5", "checkpoint.keep_last_n=3",
                      "checkpoint.save_last=false", "training.epochs=1", "data.subset=1024")
    result = Trainer(cfg, quiet=True).fit()
    (result.run_dir / "summary.json").unlink()
    return result.run_dir


def checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())


def copy_run(run: Path, to: Path, drop: str | None = None) -> Path:
    shutil.copytree(run, to)
    if drop is not None:
        shutil.rmtree(to / "checkpoints" / drop)
    return to


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_two_ranks(dirs: tuple[Path, Path], tmp_path: Path) -> list[dict[str, str | None]]:
    """Start both ranks on their own run directory copy; return what each reported."""
    port = free_port()
    procs = []
    for rank, run in enumerate(dirs):
        env = {**env_for(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.distributed.choice_worker", str(run), str(tmp_path / f"rank{rank}.json")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out + err
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_every_rank_loads_rank_zeros_choice(run_dir: Path, tmp_path: Path) -> None:
    names = checkpoints(run_dir)
    assert len(names) >= 2, names
    # Rank 0 does not see the newest checkpoint (still being written when it looked); rank 1 does.
    zero = copy_run(run_dir, tmp_path / "zero", drop=names[-1])
    one = copy_run(run_dir, tmp_path / "one")
    reports = run_two_ranks((zero, one), tmp_path)
    assert [r["error"] for r in reports] == [None, None]
    assert [r["checkpoint"] for r in reports] == [names[-2], names[-2]]


@pytest.mark.slow
def test_a_rank_that_cannot_read_the_choice_stops_every_rank_by_name(run_dir: Path, tmp_path: Path) -> None:
    names = checkpoints(run_dir)
    zero = copy_run(run_dir, tmp_path / "zero")
    one = copy_run(run_dir, tmp_path / "one", drop=names[-1])  # rank 1 lacks rank 0's choice
    reports = run_two_ranks((zero, one), tmp_path)
    missing = one / "checkpoints" / names[-1]
    for report in reports:
        assert report["error_type"] == "DistributedError", report
        assert f"rank 1 cannot read checkpoint {missing}, which rank 0 chose" in str(report["error"])
