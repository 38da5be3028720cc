"""One run directory per job: rank 0 creates it and tells the others, and a torchrun restart finds
it again.

torchrun keeps TORCHELASTIC_RUN_ID across the restarts of one job (``--max-restarts``), so rank 0
records ``<output_dir>/.elastic/<run id>.json`` -> run directory when it creates the run; a
restarted job (TORCHELASTIC_RESTART_COUNT > 0) reads it back and resumes from the newest checkpoint.
Several nodes must see the same ``run.output_dir`` (a shared filesystem) to resume.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

from kiln.distributed.env import launch_env
from kiln.distributed.group import broadcast_object, world
from kiln.runs.layout import RunPaths, write_json
from kiln.runs.rundir import RunDir

log = logging.getLogger("kiln")

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def marker_path(output_dir: Path, run_id: str) -> Path:
    return output_dir / ".elastic" / f"{_SAFE.sub('-', run_id)}.json"


def shared_run_dir(create: Callable[[], RunPaths], output_dir: Path) -> RunPaths:
    """Rank 0 calls ``create``; every rank gets its RunPaths. Records the job's marker."""
    paths: RunPaths | None = None
    if world().is_zero:
        paths = create()
        env = launch_env()
        if env.run_id is not None:
            marker = marker_path(output_dir, env.run_id)
            marker.parent.mkdir(parents=True, exist_ok=True)
            write_json(marker, {"run_dir": str(paths.root.resolve()), "run_id": env.run_id})
    root = broadcast_object(str(paths.root) if paths is not None else None)
    assert root is not None
    return paths if paths is not None else RunPaths(Path(root))


def recorded_run_dir(output_dir: Path, run_id: str) -> Path | None:
    """The run directory a job recorded, if any (read by the launcher and by restarts)."""
    try:
        data = json.loads(marker_path(output_dir, run_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    root = Path(str(data.get("run_dir", "")))
    return root if RunDir.is_run(root) else None


def restarted_run_dir(output_dir: Path) -> Path | None:
    """After a torchrun restart: the job's run directory when it has a checkpoint to resume.

    Rank 0 decides and broadcasts, so every rank takes the same path (resume or start over).
    """
    env = launch_env()
    found: str | None = None
    if world().is_zero and env.restart_count > 0 and env.run_id is None:
        log.warning("torchrun restarted the job, but without --rdzv-id kiln cannot tell which run "
                    "directory is this job's: starting a new run. Pass --rdzv-id (kiln train "
                    "--nproc does) to resume from the newest checkpoint after a restart.")
    if world().is_zero and env.restart_count > 0 and env.run_id is not None:
        root = recorded_run_dir(output_dir, env.run_id)
        checkpoints = root / "checkpoints" if root is not None else None
        if checkpoints is not None and checkpoints.is_dir() and any(
            p.is_dir() and not p.name.endswith(".tmp") for p in checkpoints.iterdir()
        ):
            found = str(root)
    result = broadcast_object(found)
    return Path(result) if result is not None else None
