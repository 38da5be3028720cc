"""``kiln.resume``: continue a stopped run exactly, as a library call; and ``run_in_dir``, the
one call (``kiln train --run-dir``) that starts, continues or starts over a fixed run directory.

The one sequence behind ``kiln resume``, ``kiln train --resume``, a sweep's retried trial and the
tests: plan (config check, newest valid checkpoint, work left?), agreed by every rank of a
distributed job, then the ordinary Trainer on the run's own directory. A run stopped before its
first checkpoint is no dead end: it trains again from step 0 in its directory
(:mod:`kiln.train.start_over`).

>>> import kiln
>>> try:
...     kiln.Trainer(kiln.load_config("configs/digits_mlp.yaml")).fit()  # doctest: +SKIP
... except kiln.TrainingInterrupted as stopped:  # SIGINT or SIGTERM: a checkpoint was written
...     result = kiln.resume(stopped.run_dir)  # doctest: +SKIP
>>> kiln.resume(result.run_dir, ["training.epochs=30"]).status  # train longer  # doctest: +SKIP
'completed'
>>> config = kiln.load_config("configs/digits_mlp.yaml", ["run.dir=/scratch/digits"])  # doctest: +SKIP
>>> run_in_dir(config).status  # the same call after every preemption  # doctest: +SKIP
'completed'
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from kiln.config.schema import KilnConfig
from kiln.errors import UsageError
from kiln.runs.rundir import RunDir
from kiln.train.callback import Callback
from kiln.train.fixed_dir import agreed_choice
from kiln.train.ranks.resume_choice import agreed_resume_plan
from kiln.train.resume import ResumePlan
from kiln.train.trainer import FitResult, Trainer

log = logging.getLogger("kiln")


def resume(
    run_dir: str | Path | ResumePlan,
    overrides: Sequence[str] = (),
    *,
    allow_config_change: bool = False,
    callbacks: Sequence[Callback] = (),
    quiet: bool = False,
) -> FitResult:
    """Continue ``run_dir`` (a run directory, one of its checkpoints, or its checkpoints/) from its
    newest valid checkpoint, bit for bit as if it had never stopped, and return how it ended.

    ``overrides`` (``training.epochs=30``) may change only settings declared safe on resume
    (:mod:`kiln.config.changes`); any other change is a ConfigError listing them, unless
    ``allow_config_change``. ``callbacks`` are added after the built-in ones; ``quiet`` hides the
    progress bar. A run with nothing left to do is not trained again: its result is read from its
    summary.json. A run stopped before its first checkpoint starts over from step 0 in its own
    directory, its events.jsonl opening with a "restarted" record. A plan made beforehand
    (:func:`kiln.train.resume.plan_resume`), e.g. to report on it first as ``kiln resume`` does,
    may be passed instead of a path.
    """
    if isinstance(run_dir, ResumePlan):
        if overrides or allow_config_change:
            raise UsageError("a ResumePlan already holds its config: pass overrides and "
                             "allow_config_change to the planning, not with the plan")
        plan = run_dir
    else:
        plan = agreed_resume_plan(run_dir, overrides, allow_config_change)  # rank 0's choice, on every rank
    if plan.finished_message is not None:
        log.info("%s", plan.finished_message)
        summary = plan.summary if plan.summary is not None else RunDir(plan.run_dir).read_summary()
        return FitResult(plan.run_dir, summary.status, dict(summary.final), dict(summary.test), summary)
    trainer = Trainer(plan.config, callbacks=callbacks, quiet=quiet, resume_from=plan.checkpoint, run_dir=plan.run_dir)
    if plan.starts_over:
        log.info("%s has no checkpoint: it starts over from step 0", plan.run_dir)
    return trainer.fit()


def run_in_dir(
    config: KilnConfig,
    *,
    allow_config_change: bool = False,
    callbacks: Sequence[Callback] = (),
    quiet: bool = False,
) -> FitResult:
    """Train ``config`` in its fixed ``run.dir``, whatever an earlier attempt left there: a new run
    when the directory is free, else its run continued (from its newest checkpoint, or from step
    0 when it has none) or, when it finished, its result read back without training. A different
    config there is a ConfigError listing the differences, unless ``allow_config_change``; see
    :mod:`kiln.train.fixed_dir`."""
    choice = agreed_choice(config, allow_config_change)  # rank 0's choice, on every rank
    if not choice.holds_run:
        return Trainer(config, callbacks=callbacks, quiet=quiet).fit()
    return resume(choice.run_dir, choice.overrides, allow_config_change=allow_config_change,
                  callbacks=callbacks, quiet=quiet)
