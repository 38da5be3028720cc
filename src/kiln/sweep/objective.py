"""One trial = one full kiln run: the trial's values applied to the base config, trained by the
ordinary Trainer, with a callback that reports the metric to Optuna after every epoch.

The trial records what happened to it in user attrs, so the study alone tells the story:
``status`` (see :mod:`kiln.sweep.trials`), ``run_dir``, ``host``, ``epochs``, ``final`` (the
last metrics), ``error`` (one line, not a traceback), ``pruned_at_epoch``, ``reason``.

A queued retry of an interrupted or lost trial carries its predecessor's attrs, so it finds the
old run directory and resumes it from its newest checkpoint (exactly, as ``kiln resume`` would).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.errors import KilnError, SweepError, TrainingInterrupted
from kiln.errors import MetricNotFound as MetricNotFound  # re-exported: its old home
from kiln.errors import TrialInterrupted as TrialInterrupted  # re-exported: its old home
from kiln.sweep.context import SweepContext
from kiln.sweep.trials import conflict
from kiln.train.callback import Callback
from kiln.train.state import TrainState

if TYPE_CHECKING:
    import optuna

    from kiln.runs.summary import RunSummary
    from kiln.train.resume import ResumePlan
    from kiln.train.trainer import FitResult

ERROR_CHARS = 500  # enough for a message, short of a traceback


class TrialFailed(Exception):
    """The trial's run failed; its reason is in the ``error`` attr. The sweep goes on."""


class TrialSkipped(Exception):
    """The trial was not trained (a duplicate grid point, or over the budget)."""


class Objective:
    """Called by ``study.optimize`` once per trial; returns the metric of the trained run."""

    def __init__(self, ctx: SweepContext, study: optuna.Study, stop: Callable[[], int | None],
                 tag_trial: Callable[[Path, optuna.trial.Trial, dict[str, Any], str], object]) -> None:
        self.ctx = ctx
        self.study = study
        self.stop = stop
        self.tag_trial = tag_trial
        self.last_number: int | None = None

    def __call__(self, trial: optuna.trial.Trial) -> float:
        import optuna

        self.last_number = trial.number
        trial.set_user_attr("status", "running")
        trial.set_user_attr("host", f"{socket.gethostname()}:{os.getpid()}")
        for stale in ("error", "reason", "resumed_from", "pruned_at_epoch"):  # a retry's inheritance
            if trial.user_attrs.get(stale) is not None:
                trial.set_user_attr(stale, None)
        params = {path: p.suggest(trial, path) for path, p in self.ctx.spec.parameters.items()}
        self._check_conflict(trial)
        signum = self.stop()
        if signum is not None:
            trial.set_user_attr("status", "interrupted")
            raise TrialInterrupted(signum)
        callback = SweepCallback(trial, self.ctx, self.stop)
        try:
            return self._outcome(trial, self._fit(trial, params, callback), callback)
        except (optuna.TrialPruned, TrialFailed):
            raise
        except (KeyboardInterrupt, TrainingInterrupted) as exc:
            trial.set_user_attr("status", "interrupted")
            # "SIGINT received: stopped at step 95": the error's fields, without the paths
            trial.set_user_attr("error", f"{exc.signal} received: stopped at step {exc.global_step}"
                                if isinstance(exc, TrainingInterrupted) else "interrupted")
            raise  # stops the sweep; a queued retry resumes the checkpoint
        except (SweepError, MetricNotFound) as exc:
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("error", _one_line(exc))
            raise  # stops the sweep: every trial would fail alike
        except Exception as exc:  # a config refused, a bug in a user's model: the sweep goes on
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("error", _one_line(exc))
            raise TrialFailed(_one_line(exc)) from None
        finally:
            if callback.run_dir is not None:
                self.tag_trial(callback.run_dir, trial, params, str(trial.user_attrs.get("status")))

    def _check_conflict(self, trial: optuna.trial.Trial) -> None:
        trials = self.study.get_trials(deepcopy=False)
        me = next(t for t in trials if t.number == trial.number)
        verdict = conflict(me, trials, self.ctx.spec.budget(), self.ctx.spec.method == "grid")
        if verdict is not None:
            trial.set_user_attr("status", verdict[0])
            trial.set_user_attr("reason", verdict[1])
            raise TrialSkipped(verdict[1])

    def _fit(self, trial: optuna.trial.Trial, params: dict[str, Any], callback: SweepCallback) -> FitResult:
        from kiln.train.resume_run import resume
        from kiln.train.trainer import Trainer

        plan = _retry_plan(trial.user_attrs.get("run_dir"))  # set when this retries a stopped trial
        if plan is None:
            return Trainer(self.ctx.trial_config(trial.number, params), callbacks=[callback], quiet=True).fit()
        if plan.checkpoint is not None:
            trial.set_user_attr("resumed_from", f"{plan.run_dir.name}/{plan.checkpoint.path.name}")
        else:  # the run had ended; only telling Optuna was missed
            callback.adopt(plan.run_dir, plan.summary)
        return resume(plan, callbacks=[callback], quiet=True)  # exactly as `kiln resume` would

    def _outcome(self, trial: optuna.trial.Trial, result: FitResult, callback: SweepCallback) -> float:
        import optuna

        metric = self.ctx.spec.metric
        epoch, metrics = model_epoch(result)
        final = {k: v for k, v in {**metrics, **result.test_metrics}.items()
                 if k.startswith(("train_", "val_", "test_"))}
        trial.set_user_attr("final", final)
        trial.set_user_attr("metric_epoch", epoch)
        trial.set_user_attr("epochs", result.summary.epochs_trained)
        if callback.pruned_at is not None:
            trial.set_user_attr("status", "pruned")
            trial.set_user_attr("pruned_at_epoch", callback.pruned_at)
            raise optuna.TrialPruned(f"pruned at epoch {callback.pruned_at}")
        if result.status not in ("completed", "stopped_early"):
            reason = result.summary.stop_reason or result.status
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("error", reason)
            raise TrialFailed(reason)
        if metric not in final:
            raise MetricNotFound(metric, sorted(final))  # recorded as failed by the caller
        trial.set_user_attr("status", "completed")
        return float(final[metric])


def _retry_plan(previous: str | None) -> ResumePlan | None:
    """How to continue a stopped trial's run directory; None when there is nothing usable in it
    (no directory, no checkpoint): the trial then trains afresh."""
    from kiln.train.resume import plan_resume

    if not previous or not Path(previous).is_dir():
        return None
    try:
        return plan_resume(previous)
    except KilnError:
        return None


def model_epoch(result: FitResult) -> tuple[int, dict[str, float]]:
    """The epoch whose weights the run ends with, and its metrics: the best epoch when early
    stopping restored it, else the last. A trial's value describes the model it produced, so
    training ``best.yaml`` again gives the very value the sweep reported."""
    summary = result.summary
    restored, best = summary.restored_best_epoch, summary.best
    if restored is not None and best is not None and best.epoch == restored:
        return restored, dict(best.metrics)
    return summary.epochs_trained, dict(result.metrics)


class SweepCallback(Callback):
    """Reports the sweep metric to Optuna after every epoch and stops a trial Optuna prunes."""

    def __init__(self, trial: optuna.trial.Trial, ctx: SweepContext, stop: Callable[[], int | None]) -> None:
        self.trial = trial
        self.metric = ctx.spec.metric
        self.pruning = ctx.spec.pruner.name != "none"
        self.stop = stop
        self.run_dir: Path | None = None
        self.pruned_at: int | None = None

    def on_fit_start(self, state: TrainState) -> None:
        self.run_dir = state.run_dir
        self.trial.set_user_attr("run_dir", str(state.run_dir.resolve()))
        for metrics in state.history:  # a resumed run: its earlier epochs, for the pruner
            if self.metric in metrics:
                self.trial.report(float(metrics[self.metric]), int(metrics["epoch"]))
        signum = self.stop()
        if signum is not None:  # the signal came while the run was being built: hand it over
            os.kill(os.getpid(), signum)  # to the Trainer's handler, which checkpoints and stops

    def on_epoch_end(self, state: TrainState) -> None:
        if self.metric.startswith("test_"):
            return  # only known at the end: nothing to report per epoch
        if self.metric not in state.metrics:
            raise MetricNotFound(self.metric, sorted(state.metrics))
        epoch = int(state.metrics["epoch"])
        self.trial.report(float(state.metrics[self.metric]), epoch)
        # The last epoch is never pruned: the trial is complete by then.
        if self.pruning and epoch < state.config.training.epochs and self.trial.should_prune():
            self.pruned_at = epoch
            state.request_stop(f"pruned by the sweep's pruner at epoch {epoch}")

    def adopt(self, run_dir: Path, summary: RunSummary | None) -> None:
        """Take over a run that had already ended (its worker died before telling Optuna)."""
        self.run_dir = run_dir
        if summary is not None and (summary.stop_reason or "").startswith("pruned by the sweep"):
            self.pruned_at = summary.epochs_trained


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    first = " ".join(text.splitlines()[:3])
    return f"{type(exc).__name__}: {first}"[:ERROR_CHARS]
