"""What environment.json says: the CPU (parsed from /proc/cpuinfo on x86 and on arm), and the git
commit with its dirty flag, read from a real repository made for the test."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kiln.runs.environment import KERNEL_ISA, git_info, parse_cpuinfo, run_tags
from kiln.runs.layout import RunPaths
from kiln.testing import tiny_config
from kiln.train import Trainer

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 avx fma avx2 avx512f avx512_vnni
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu
"""

ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes crc32 asimddp i8mm bf16
CPU implementer\t: 0x41
"""


def test_x86_model_and_the_first_cpus_flags() -> None:
    model, flags = parse_cpuinfo(X86)
    assert model == "AMD EPYC 7B13"
    assert [f for f in KERNEL_ISA if f in flags] == ["fma", "avx2", "avx512f", "avx512_vnni"]


def test_arm_features_without_a_model_name() -> None:
    model, flags = parse_cpuinfo(ARM)
    assert model is None
    assert [f for f in KERNEL_ISA if f in flags] == ["asimd", "asimddp", "i8mm", "bf16"]


def test_empty_text() -> None:
    assert parse_cpuinfo("") == (None, set())


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=kiln tests", "-c", "user.email=tests@kiln.invalid", "-c", "commit.gpgsign=false",
         *args], cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A git repository with one committed file, clean."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "train.py").write_text("print('v1')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "v1")
    return root


def test_a_clean_checkout_is_not_dirty(repo: Path) -> None:
    assert git_info(repo) == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": False}


def test_a_changed_tracked_file_makes_the_checkout_dirty_staged_or_not(repo: Path) -> None:
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text("print('v2')\n")
    assert git_info(repo) == {"commit": commit, "dirty": True}
    git(repo, "add", "train.py")
    assert git_info(repo) == {"commit": commit, "dirty": True}


def test_an_untracked_file_alone_does_not_make_it_dirty(repo: Path) -> None:
    # Run directories and data caches beside the code are untracked: they must not mark every run dirty.
    (repo / "runs").mkdir()
    (repo / "runs" / "notes.txt").write_text("scratch\n")
    assert git_info(repo)["dirty"] is False


def test_outside_a_repository_there_is_no_git_entry(tmp_path: Path) -> None:
    assert git_info(tmp_path) == {}


@pytest.mark.parametrize("dirty", [True, False])
def test_environment_json_and_the_tracking_tags_record_the_checkout_the_run_started_in(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dirty: bool
) -> None:
    if dirty:
        (repo / "train.py").write_text("print('uncommitted')\n")
    monkeypatch.chdir(repo)  # a run records the repository it is started from
    result = Trainer(tiny_config(tmp_path / "runs", "training.epochs=1", "checkpoint.enabled=false",
                                 "tracking.system_metrics=false", backends=("jsonl",)), quiet=True).fit()
    environment = json.loads((result.run_dir / "environment.json").read_text())
    commit = git(repo, "rev-parse", "HEAD")
    assert environment["git"] == {"commit": commit, "dirty": dirty}
    tags = run_tags(environment, RunPaths(result.run_dir))
    assert (tags["kiln.git_commit"], tags["kiln.git_dirty"]) == (commit, "true" if dirty else "false")
