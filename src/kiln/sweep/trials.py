"""What each trial of a study is, from kiln's point of view, and which ones use up the budget.

Optuna knows five states; a sweep needs a few more, kept in the trial's ``status`` user attr:

* ``completed``, ``pruned``, ``failed`` (the trial's own error), ``running``, ``waiting`` (queued
  again, to be picked up by the next free worker): these count toward ``n_trials``;
* ``interrupted`` (Ctrl-C; its checkpoint is resumed by a queued retry), ``lost`` (its worker died:
  no heartbeat for the grace period; retried the same way), ``duplicate`` (a grid point another
  worker had already taken) and ``surplus`` (started by a worker after others had used up the
  budget): these do not count, and were not trained (or are continued by their retry).

Budget and duplicates are decided by trial number, so two workers that race agree on who yields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

COUNTED = ("completed", "pruned", "failed", "running", "waiting")
NOT_COUNTED = ("interrupted", "lost", "duplicate", "surplus")


def status(trial: FrozenTrial) -> str:
    """kiln's status of ``trial`` (see the module docstring)."""
    from optuna.trial import TrialState

    state = trial.state
    if state == TrialState.COMPLETE:
        return "completed"
    if state == TrialState.PRUNED:
        return "pruned"
    if state in (TrialState.RUNNING, TrialState.WAITING):
        return state.name.lower()
    recorded = trial.user_attrs.get("status")
    if recorded in ("failed", "interrupted", "duplicate", "surplus"):
        return str(recorded)
    # FAIL in the storage while its own record says it was going fine: the heartbeat check
    # failed it (its worker died, or its heartbeats were later than the grace period).
    return "lost" if recorded in ("running", "completed", "pruned") else "failed"


def counts(trial: FrozenTrial) -> bool:
    return status(trial) in COUNTED


def is_retry(trial: FrozenTrial) -> bool:
    """Queued again by Optuna's retry callback (a lost or interrupted trial)."""
    return "failed_trial" in trial.system_attrs


def retry_of(trial: FrozenTrial) -> int | None:
    value = trial.system_attrs.get("failed_trial")
    return None if value is None else int(value)


def conflict(me: FrozenTrial, trials: Sequence[FrozenTrial], budget: int | None, grid: bool) -> tuple[str, str] | None:
    """``(status, reason)`` when ``me`` must not train: the budget is used up, or (grid) its point
    is already taken; None when it should go ahead."""
    others = [t for t in trials if t.number != me.number and counts(t)]
    if budget is not None and not is_retry(me):
        # Retries stand in for trials that were counted when they started.
        ahead = [t for t in others if t.number < me.number or is_retry(t)]
        if len(ahead) >= budget:
            return "surplus", f"the budget of {budget} trials was already taken by other workers"
    if grid:
        for other in others:
            if other.params == me.params and _precedence(other) < _precedence(me):
                return "duplicate", f"grid point already taken by trial {other.number}"
    return None


def _precedence(trial: FrozenTrial) -> tuple[int, int, int]:
    """Lower wins a grid point: finished trials first, then queued retries, then by number."""
    return (0 if trial.state.is_finished() else 1, 0 if is_retry(trial) else 1, trial.number)


def summary_counts(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """How many trials are in each kiln status (every status present, zero or not)."""
    tally = dict.fromkeys((*COUNTED, *NOT_COUNTED), 0)
    for trial in trials:
        tally[status(trial)] += 1
    return tally
