"""Starting worker processes through torch's own elastic launcher (``torchrun``), in this process.

``run_torchrun(argv)`` is ``python -m torch.distributed.run *argv`` without a new interpreter;
``kiln.cli.launch`` builds the argument list from ``kiln train ... --nproc N`` and reports failures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any


def run_torchrun(argv: Sequence[str]) -> None:
    """Run torchrun's agent with ``argv`` until every worker has exited.

    torch's exceptions pass through untouched: ``ChildFailedError`` when a worker failed (its
    ``get_first_failure()`` names the rank that failed first; see ``describe``) and
    ``SignalException`` when SIGTERM/SIGINT reached the launcher (torchrun passed it on).
    """
    from torch.distributed.run import get_args_parser, run

    elastic_log = logging.getLogger("torch.distributed.elastic")
    previous_level = elastic_log.level
    elastic_log.setLevel(logging.WARNING)  # its INFO lines repeat what kiln prints; only while it runs
    try:
        run(get_args_parser().parse_args(list(argv)))  # type: ignore[no-untyped-call]
    finally:
        elastic_log.setLevel(previous_level)


def describe(failure: Any) -> str:
    """``exited with code 1: ValueError: ...`` or ``was killed by SIGKILL``, for one of torchrun's
    ProcessFailure records."""
    if failure.exitcode < 0:
        return f"was killed by {failure.signal_name()} (exit code {failure.exitcode})"
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    text = str(message).strip().splitlines()[0] if str(message).strip() else ""
    if not text or text.startswith("To enable traceback"):
        return f"exited with code {failure.exitcode} (its output above has the details)"
    return f"exited with code {failure.exitcode}: {text}"
