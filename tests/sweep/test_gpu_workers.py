"""Filling the machine: ``workers: auto`` plans one worker per visible GPU, each pinned with
CUDA_VISIBLE_DEVICES (checked on a faked device list and in real worker processes), and falls back
to one worker on a machine without CUDA; ``kiln train --nproc auto`` likewise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kiln.cli.launch import resolve_auto_nproc
from kiln.cli.main import main
from kiln.errors import SweepError
from kiln.sweep import run_sweep
from kiln.sweep.gpus import CUDA_VISIBLE_DEVICES, plan_workers, visible_gpus
from kiln.sweep.workers import spawn
from kiln.testing.tiny import TINY_OVERRIDES
from tests.sweep.conftest import base_overrides, write_sweep

FOUR = {CUDA_VISIBLE_DEVICES: "0,1,2,3"}


def pins(plan: object) -> list[str | None]:
    return [env.get(CUDA_VISIBLE_DEVICES) for env in plan.envs]  # type: ignore[attr-defined]


def test_visible_gpus_are_named_as_cuda_visible_devices_names_them() -> None:
    assert visible_gpus(FOUR, device_count=4) == ["0", "1", "2", "3"]
    assert visible_gpus({CUDA_VISIBLE_DEVICES: "4, 5,GPU-3f2a"}, device_count=3) == ["4", "5", "GPU-3f2a"]
    assert visible_gpus({CUDA_VISIBLE_DEVICES: "0,1,7"}, device_count=2) == ["0", "1"]  # CUDA found 2
    assert visible_gpus({}, device_count=2) == ["0", "1"]
    assert visible_gpus(FOUR, device_count=0) == []  # no CUDA: the variable alone makes no GPU


def test_auto_plans_one_worker_per_gpu_or_per_group() -> None:
    gpus = visible_gpus(FOUR, device_count=4)
    assert pins(plan_workers("auto", 1, gpus)) == ["0", "1", "2", "3"]
    assert pins(plan_workers("auto", 2, gpus)) == ["0,1", "2,3"]
    three = plan_workers("auto", 3, gpus)
    assert pins(three) == ["0,1,2"]
    assert three.message == "GPU(s) 3 stay idle (4 visible, 3 per worker)"
    assert not three.in_process  # one worker, but pinned to a subset: it needs its own process
    assert plan_workers("auto", 4, gpus).in_process  # one worker that sees every GPU runs here
    with pytest.raises(SweepError, match="gpus_per_worker=5, but only 4 GPU"):
        plan_workers("auto", 5, gpus)


def test_a_number_of_workers_shares_the_gpus_round_robin() -> None:
    plan = plan_workers(6, 1, ["0", "1", "2", "3"])
    assert pins(plan) == ["0", "1", "2", "3", "0", "1"]
    assert plan.message == "6 workers share 4 GPU group(s) round-robin"
    assert pins(plan_workers(3, 1, [])) == [None, None, None]  # CPU: as before, nothing pinned


def test_without_a_gpu_auto_falls_back_to_one_worker_and_says_so() -> None:
    plan = plan_workers("auto", 1, [])
    assert (plan.count, plan.in_process, pins(plan)) == (1, True, [None])
    assert plan.message is not None and "no CUDA GPU, so the sweep falls back to 1 worker on the CPU" in plan.message


def test_each_worker_process_sees_only_its_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real processes started the way the sweep starts its workers, under a parent that sees
    GPUs 4-7: each child sees its own pair, by the parent's names for them."""
    monkeypatch.setenv(CUDA_VISIBLE_DEVICES, "4,5,6,7")
    plan = plan_workers("auto", 2, visible_gpus(device_count=4))
    show = [sys.executable, "-c", f"import os; print(os.environ.get({CUDA_VISIBLE_DEVICES!r}))"]
    children = [spawn(show, env, stdout=subprocess.PIPE, text=True) for env in plan.envs]
    assert [c.communicate(timeout=60)[0].strip() for c in children] == ["4,5", "6,7"]
    inherited = spawn(show, {}, stdout=subprocess.PIPE, text=True)  # an unpinned worker sees all
    assert inherited.communicate(timeout=60)[0].strip() == "4,5,6,7"


@pytest.mark.skipif(visible_gpus(), reason="the fallback happens only without CUDA")
def test_a_sweep_with_workers_auto_runs_one_worker_on_a_cpu_machine(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "one.yaml", parameters={"training.lr": {"choice": [0.01]}})
    lines: list[str] = []
    outcome = run_sweep(None, sweep, base_overrides(tmp_path / "runs", "training.epochs=1"),
                        echo=lines.append, plots=False, workers="auto")
    assert outcome.exit_code == 0, lines
    assert any("falls back to 1 worker on the CPU" in line for line in lines), lines
    assert not any(line.startswith("started ") for line in lines)  # in this process
    assert json.loads((outcome.ctx.sweep_dir / "sweep.json").read_text())["spec"]["workers"] == 1


def test_nproc_auto_uses_every_gpu_or_falls_back_to_one_process() -> None:
    assert resolve_auto_nproc(4) == (4, "--nproc auto: 4 CUDA GPUs visible, so 4 processes, one per GPU (NCCL)")
    assert resolve_auto_nproc(1)[0] is None
    assert resolve_auto_nproc(0) == (None, "--nproc auto: no CUDA GPU is visible, so the run falls back to "
                                     "this one process on the CPU (--nproc N trains on N CPU processes with gloo)")
    assert resolve_auto_nproc(8, "cpu")[1].startswith("--nproc auto: run.device is cpu, so")


@pytest.mark.skipif(visible_gpus(), reason="the fallback happens only without CUDA")
def test_kiln_train_nproc_auto_trains_in_this_process_on_a_cpu_machine(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--nproc", "auto", "--quiet", *TINY_OVERRIDES, "training.epochs=1",
                 f"run.output_dir={tmp_path}", "tracking.backends=[jsonl]", "checkpoint.enabled=false"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "--nproc auto: no CUDA GPU is visible, so the run falls back to this one process" in out
    assert "launching:" not in out  # no torchrun
    assert len(list(tmp_path.glob("tiny_*/summary.json"))) == 1
