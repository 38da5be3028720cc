"""What torchrun tells a worker through its environment, read once into a small record.

torchrun (``torch.distributed.run``) sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (the ranks
on this node), MASTER_ADDR/PORT for every worker, plus TORCHELASTIC_RUN_ID (one id per job, kept across restarts) and
TORCHELASTIC_RESTART_COUNT (0 on the first attempt). Nothing here writes the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LaunchEnv:
    """How this process was launched: by torchrun (``launched``) or directly."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    restart_count: int = 0
    run_id: str | None = None  # TORCHELASTIC_RUN_ID: names the job, the same after a restart
    local_world_size: int | None = None  # LOCAL_WORLD_SIZE: ranks on this node (None: not said)

    @property
    def launched(self) -> bool:
        """True inside a torchrun worker (also with a single process)."""
        return self.run_id is not None or self.world_size > 1


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv:
    """Read torchrun's variables (defaults describe a plain single process)."""
    env = os.environ if environ is None else environ
    return LaunchEnv(
        rank=int(env.get("RANK", "0")),
        world_size=int(env.get("WORLD_SIZE", "1")),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        restart_count=int(env.get("TORCHELASTIC_RESTART_COUNT", "0")),
        local_world_size=int(env["LOCAL_WORLD_SIZE"]) if env.get("LOCAL_WORLD_SIZE") else None,
        # torchrun's default id is the literal "none": shared by every job started without
        # --rdzv-id, so it cannot name a job (a restart would find another job's run directory)
        run_id=env.get("TORCHELASTIC_RUN_ID") if env.get("TORCHELASTIC_RUN_ID") not in (None, "", "none") else None,
    )
