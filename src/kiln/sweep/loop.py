"""One worker: takes trials from the study until the budget is used up, then waits for the trials
still running elsewhere (so that a dead worker's trial, failed by the heartbeat check and queued
again, is still picked up), then returns.

Each trial runs through ``study.optimize(n_trials=1)``, which gives it Optuna's heartbeat thread
and fails stale trials first. The budget is counted over the whole study (all workers, all
machines), not per process, so N machines running the same command share ``n_trials``.

Signals: the first SIGINT/SIGTERM stops the worker cleanly. Inside a trial the Trainer handles it
(it checkpoints and stops); the trial is then marked ``interrupted`` and queued again, so the next
run of the sweep resumes it from that checkpoint. A second signal stops at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import TYPE_CHECKING, Any

from kiln.errors import KilnError
from kiln.sweep import trials as trial_status
from kiln.sweep.context import SweepContext
from kiln.sweep.mlflow_parent import tag_trial
from kiln.sweep.objective import Objective, TrialFailed, TrialInterrupted, TrialSkipped
from kiln.sweep.study import fail_stale, make_storage, open_study, quiet_optuna, require_optuna

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("kiln.sweep")
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopSignals:
    """Remembers the first SIGINT/SIGTERM (the worker stops after it); a second one is immediate."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNAL_EXIT:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self) -> int | None:
        return self.signum


def run_worker(ctx: SweepContext, worker: int = 0, echo: Callable[[str], None] = print) -> int:
    """Run trials until the study's budget is used up; the exit code (0, or 130/143 on a signal)."""
    from kiln.errors import TrainingInterrupted

    require_optuna()
    with quiet_optuna():
        study = open_study(make_storage(ctx.storage, ctx.spec), ctx.study_name, ctx.spec, ctx.base_config(), worker)
    prefix = f"[worker {worker}] " if ctx.spec.workers != 1 else ""
    timeout = ctx.spec.timeout
    started = time.monotonic()
    waiting_said = False
    # A trial's MLflow run is created by its worker after the trial (tracking.mlflow_start_delay),
    # so nesting it under the sweep waits for that: on a thread of its own, not before the next
    # trial. Leaving the block waits for every nesting.
    with ThreadPoolExecutor(1, thread_name_prefix="kiln-sweep-nest") as nesting, StopSignals() as stop, \
            quiet_optuna():
        objective = Objective(
            ctx, study, stop.requested,
            lambda run_dir, trial, params, status: nesting.submit(
                tag_trial, ctx, run_dir, trial.number, params, status),
        )
        while stop.signum is None:
            fail_stale(study)
            timed_out = timeout is not None and time.monotonic() - started >= timeout
            action = next_action(study.get_trials(deepcopy=False), ctx.spec.budget(), timed_out)
            if action == "done":
                break
            if action == "wait":
                if not waiting_said:
                    echo(f"{prefix}budget used up; waiting for the trials still running elsewhere")
                    waiting_said = True
                time.sleep(min(2.0, ctx.spec.heartbeat.interval))
                continue
            waiting_said = False
            objective.last_number = None
            try:
                study.optimize(objective, n_trials=1, catch=(TrialFailed, TrialSkipped))
            except (KeyboardInterrupt, TrialInterrupted, TrainingInterrupted) as exc:
                _requeue(study, objective.last_number)
                code = exc.exit_code if isinstance(exc, KilnError) else 130
                stop.signum = stop.signum or code - 128
            except Exception:
                if not _was_lost(study, objective.last_number):
                    raise
                # Optuna cannot record a trial another worker has already failed for late
                # heartbeats (a stalled machine); that worker queued it again, so go on.
                echo(f"{prefix}trial {objective.last_number} was declared lost while it ran (heartbeats "
                     f"late by over {ctx.spec.heartbeat.grace_period} s); its retry will finish it")
                continue
            if objective.last_number is not None:
                echo(prefix + describe(study, objective.last_number, ctx))
    return 0 if stop.signum is None else SIGNAL_EXIT.get(signal.Signals(stop.signum), 130)


def next_action(trials: list[optuna.trial.FrozenTrial], budget: int | None, timed_out: bool) -> str:
    """``run`` another trial, ``wait`` for trials running elsewhere, or ``done``."""
    statuses = [trial_status.status(t) for t in trials]
    if timed_out:
        return "done"
    if "waiting" in statuses:
        return "run"  # a queued retry: it was counted when it first started
    used = sum(s in trial_status.COUNTED for s in statuses)
    if budget is None or used < budget:
        return "run"
    return "wait" if "running" in statuses else "done"


def describe(study: optuna.Study, number: int, ctx: SweepContext) -> str:
    """One line about a finished trial, for the console."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    from kiln.sweep.report import trial_row

    row = trial_row(trial, ctx)
    value = row[ctx.spec.metric]
    shown = f"{ctx.spec.metric}={value:.4f}" if isinstance(value, float) else ""
    params = " ".join(f"{p}={row[p]:.4g}" if isinstance(row[p], float) else f"{p}={row[p]}"
                      for p in ctx.spec.parameters)
    note = f"  [{row['note']}]" if row["note"] else ""
    return f"trial {number:>3} {row['status']:<11} {shown:<24} {params}{note}"


def _was_lost(study: optuna.Study, number: int | None) -> bool:
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    return bool(trials) and trial_status.status(trials[0]) == "lost"


def _requeue(study: optuna.Study, number: int | None) -> None:
    """Queue an interrupted trial again (same values, its attrs, so it resumes its run)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    if number is None:
        return
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    if trial_status.status(trial) != "interrupted":
        return
    with warnings.catch_warnings():
        # Optuna's retry callback is marked experimental; it is what heartbeats use for lost trials.
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial)
