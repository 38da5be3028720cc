"""One rank of a two-process gloo group that asks for the agreed resume plan of its own copy of a
run directory: ``python -m tests.distributed.choice_worker RUN_DIR OUT_JSON`` with RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT set. Writes which checkpoint it got, or its error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kiln.distributed import shutdown
from kiln.errors import KilnError
from kiln.train.ranks.resume_choice import agreed_resume_plan


def main(run_dir: str, out: str) -> None:
    result: dict[str, str | None] = {"checkpoint": None, "error": None, "error_type": None}
    try:
        plan = agreed_resume_plan(run_dir, ["distributed.timeout=60"])
        result["checkpoint"] = plan.checkpoint.path.name if plan.checkpoint is not None else None
    except KilnError as exc:
        result.update(error=str(exc), error_type=type(exc).__name__)
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    shutdown(wait_for_peers=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
