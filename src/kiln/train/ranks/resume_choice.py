"""Rank 0 chooses the checkpoint a distributed resume starts from; every rank loads exactly that one.

Each rank picking "the newest valid checkpoint" by itself can go wrong: nodes without a shared
filesystem may hold different checkpoints, and one pruned or written between two ranks' reads
changes the answer, so ranks would continue from different states. Rank 0 therefore plans the
resume (config check, newest valid checkpoint, whether work is left) and broadcasts its decision:
the checkpoint's directory name, that nothing is left to do, or its error. Every other rank loads
that directory from its own view of the run directory; the ranks then share how loading went, so a
rank that cannot read it stops the whole job with one DistributedError naming the rank and the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kiln.checkpoint.manager import load_checkpoint
from kiln.config.loader import load_config
from kiln.config.schema import KilnConfig
from kiln.distributed.env import launch_env
from kiln.distributed.group import all_gather_object, broadcast_object
from kiln.errors import CheckpointError, DistributedError, KilnError
from kiln.runs.layout import RunPaths
from kiln.train.ranks.group import join_group
from kiln.train.resume import ResumePlan, plan_resume, resolve_run_dir


def agreed_resume_plan(
    path: str | Path, overrides: Sequence[str] = (), allow_config_change: bool = False
) -> ResumePlan:
    """``plan_resume`` decided by rank 0 for every rank (joins the process group first, when launched)."""
    if launch_env().world_size <= 1:  # one process: nothing to agree on (the trainer joins any group)
        return plan_resume(path, overrides, allow_config_change)
    run_dir = resolve_run_dir(path)
    config = load_config(RunPaths(run_dir).config, overrides)
    w = join_group(config.distributed, config.run.device)  # the run's own timeout and backend
    if not w.distributed:
        return plan_resume(path, overrides, allow_config_change)
    decision: dict[str, Any] = {"checkpoint": None, "finished": None, "error": None}
    plan: ResumePlan | None = None
    if w.is_zero:
        try:
            plan = plan_resume(path, overrides, allow_config_change)
        except KilnError as exc:
            broadcast_object({**decision, "error": str(exc)})
            raise
        checkpoint = plan.checkpoint.path.name if plan.checkpoint is not None else None
        decision = broadcast_object({**decision, "checkpoint": checkpoint, "finished": plan.finished_message})
    else:
        decision = broadcast_object(decision)
        if decision["error"] is not None:
            raise DistributedError(f"rank {w.rank} stops: rank 0 could not plan the resume: {decision['error']}")
    problem: str | None = None
    if plan is None:  # another rank: load what rank 0 chose, nothing else
        plan, problem = _follow(run_dir, config, decision, w.rank)
    problems = [p for p in all_gather_object(problem) if p is not None]
    if problems:
        raise DistributedError("; ".join(problems))
    return plan


def _follow(run_dir: Path, config: KilnConfig, decision: dict[str, Any], rank: int) -> tuple[ResumePlan, str | None]:
    """This rank's plan from rank 0's decision, and what went wrong loading its checkpoint."""
    if decision["checkpoint"] is None:
        return ResumePlan(run_dir, config, None, decision["finished"]), None
    path = RunPaths(run_dir).checkpoints / decision["checkpoint"]
    try:
        checkpoint = load_checkpoint(path)
    except (CheckpointError, OSError) as exc:
        return ResumePlan(run_dir, config, None, None), (
            f"rank {rank} cannot read checkpoint {path}, which rank 0 chose to resume from ({exc}). "
            "Every rank must see the same checkpoints: put run.output_dir on a shared filesystem, "
            "or copy the run directory to every node"
        )
    return ResumePlan(run_dir, config, checkpoint, None), None
