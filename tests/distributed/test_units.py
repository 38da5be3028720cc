"""The single-process parts of kiln.distributed: batch plans, launcher arguments, failure reports,
reducing meter states, and the launch environment."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

import pytest
import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from kiln.cli.launch import failure_message, torchrun_args
from kiln.config.loader import load_config
from kiln.distributed import launch_env, world
from kiln.distributed.reductions import _add, reduce_state
from kiln.errors import ConfigError, KilnError
from kiln.tasks.meters import ClassificationMeter
from kiln.train.ranks.group import choose_backend
from kiln.train.ranks.meters import ReducingTask
from kiln.train.ranks.rundir import marker_path, recorded_run_dir
from kiln.train.ranks.scaling import batch_plan


def launch_args(**kw: object) -> argparse.Namespace:
    base = {"nproc": 2, "max_restarts": 0, "nnodes": "1", "rdzv_endpoint": None, "rdzv_id": None}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize(
    ("mode", "scaling", "world_size", "per_process", "effective", "lr"),
    [
        ("per_process", "none", 4, 32, 128, 0.1),
        ("per_process", "linear", 4, 32, 128, 0.4),
        ("per_process", "sqrt", 4, 32, 128, 0.2),
        ("global", "linear", 4, 8, 32, 0.1),  # the global batch stays: nothing to scale
        ("per_process", "linear", 1, 32, 32, 0.1),
    ],
)
def test_batch_plan(mode: str, scaling: str, world_size: int, per_process: int, effective: int, lr: float) -> None:
    cfg = load_config(None, ["training.batch_size=32", "training.lr=0.1",
                             f"distributed.batch_size={mode}", f"distributed.lr_scaling={scaling}"])
    plan = batch_plan(cfg, world_size)
    assert (plan.per_process_batch, plan.effective_batch) == (per_process, effective)
    assert plan.lr == pytest.approx(lr)


def test_global_batch_that_does_not_split_is_a_config_error() -> None:
    cfg = load_config(None, ["training.batch_size=30", "distributed.batch_size=global"])
    with pytest.raises(ConfigError, match="cannot be split evenly over 4 processes; use a multiple of 4"):
        batch_plan(cfg, 4)


def test_nccl_without_cuda_is_refused() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert choose_backend("auto", "auto") == "gloo"
    with pytest.raises(ConfigError, match="nccl' needs CUDA"):
        choose_backend("nccl", "cpu")


def test_a_plain_process_is_a_world_of_one() -> None:
    assert world().size == 1 and world().is_zero and not world().distributed
    env = launch_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                      "TORCHELASTIC_RESTART_COUNT": "2", "TORCHELASTIC_RUN_ID": "job7"})
    assert (env.rank, env.world_size, env.local_rank, env.restart_count, env.run_id) == (3, 8, 1, 2, "job7")
    assert env.launched and not launch_env({}).launched
    # torchrun's default id without --rdzv-id is "none", shared by every such job: not an id
    assert launch_env({"TORCHELASTIC_RUN_ID": "none"}).run_id is None


def test_torchrun_arguments() -> None:
    argv = torchrun_args(launch_args(max_restarts=2), ["train", "x=1"], "abc")
    assert argv[-4:] == ["-m", "kiln", "train", "x=1"]
    assert argv[2:4] == ["--nproc-per-node", "2"] and "--max-restarts" in argv and "abc" in argv
    assert "localhost:0" in argv
    with pytest.raises(KilnError, match="needs --rdzv-endpoint"):
        torchrun_args(launch_args(nnodes="2"), ["train"], "abc")
    with pytest.raises(KilnError, match="--nproc must be at least 1"):
        torchrun_args(launch_args(nproc=0), ["train"], "abc")


def test_failure_report_names_the_first_rank_and_how_to_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    killed = ProcessFailure(local_rank=1, pid=4242, exitcode=-signal.SIGKILL, error_file="")
    crashed = ProcessFailure(local_rank=0, pid=4241, exitcode=1, error_file="")
    killed.timestamp, crashed.timestamp = 100, 101
    exc = ChildFailedError("kiln", {1: killed, 0: crashed})
    message = failure_message(exc, launch_args(), ["train"], run_dir)
    assert message.startswith("distributed training failed: rank 1 (local rank 1, pid 4242) was killed by SIGKILL")
    assert "rank 0: exited with code 1" in message
    assert f"resume with: kiln resume {run_dir} --nproc 2" in message


def test_meter_states_add_up_also_when_a_rank_saw_nothing() -> None:
    seen, empty = ClassificationMeter(), ClassificationMeter()
    seen.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), torch.tensor(0.5))
    total = _add(seen.state_dict(), empty.state_dict())
    merged = ClassificationMeter()
    merged.load_state_dict(total)
    assert merged.compute() == {"loss": 0.5, "accuracy": 0.5}
    assert reduce_state(seen.state_dict())["count"] == 2  # one process: unchanged


def test_reducing_task_keeps_the_task() -> None:
    from kiln.data.spec import DataSpec
    from kiln.tasks import build_task

    cfg = load_config(None, [])
    spec = DataSpec(name="d", task="classification", input_shape=(4,), num_classes=3)
    task = ReducingTask(build_task(spec, cfg.training.loss))
    meter = task.meter()
    outputs, targets = torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([0])
    meter.update(outputs, targets, task.loss(outputs, targets))
    assert meter.compute()["accuracy"] == 1.0 and task.name == "classification"


def test_recorded_run_dir_needs_a_real_run(tmp_path: Path) -> None:
    from kiln.runs.layout import write_json

    marker = marker_path(tmp_path, "job/1")
    marker.parent.mkdir()
    write_json(marker, {"run_dir": str(tmp_path / "gone")})
    assert recorded_run_dir(tmp_path, "job/1") is None
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "config.yaml").write_text("{}")
    assert recorded_run_dir(tmp_path, "job/1") == tmp_path / "gone"
