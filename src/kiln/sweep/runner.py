"""``run_sweep``: everything ``kiln sweep`` does, callable from Python; ``open_report`` for
``kiln sweep-report``.

>>> outcome = run_sweep("configs/digits_mlp.yaml", "configs/sweeps/digits_grid.yaml")  # doctest: +SKIP
>>> outcome.report.best["params"]  # doctest: +SKIP

Running the same command again resumes the study: finished trials are kept, interrupted ones are
resumed from their checkpoints, and only what is missing of the budget runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.config.loader import load_config
from kiln.config.schema import RunConfig
from kiln.errors import SweepError, exception_line
from kiln.sweep import trials as trial_status
from kiln.sweep.context import CONTEXT_FILE, SweepContext
from kiln.sweep.gpus import plan_workers, visible_gpus
from kiln.sweep.mlflow_parent import PARENT_ATTR, finish_parent, start_parent
from kiln.sweep.paths import resolve_parameters
from kiln.sweep.report import SweepReport, build_report
from kiln.sweep.spec import SweepSpec, load_sweep
from kiln.sweep.study import (
    fail_stale,
    make_storage,
    mask,
    open_study,
    quiet_optuna,
    require_optuna,
    with_driver,
)

if TYPE_CHECKING:
    import optuna

SPEC_ATTR = "kiln.spec"


@dataclass(frozen=True)
class SweepOutcome:
    ctx: SweepContext
    exit_code: int  # 0 done, 1 no trial completed, 130/143 interrupted
    report: SweepReport


def prepare_sweep(config: str | Path | None, sweep_file: str | Path, overrides: Sequence[str] = (),
                  **replace: Any) -> SweepContext:
    """Load and check the base config and the sweep file (``replace``: fields set on the command
    line, None keeps the file's). Nothing is created when something is wrong."""
    base = load_config(config, overrides)
    spec = resolve_parameters(load_sweep(sweep_file, **replace), base.model_dump(mode="json"))
    name = spec.study_name or f"{base.run.name}-{Path(sweep_file).stem}"
    return SweepContext.create(base, spec, name, spec.storage)


def run_sweep(config: str | Path | None, sweep_file: str | Path, overrides: Sequence[str] = (), *,
              echo: Callable[[str], None] = print, plots: bool = True, **replace: Any) -> SweepOutcome:
    """Run (or resume) a sweep to the end of its budget and write its report."""
    from kiln.sweep.loop import run_worker
    from kiln.sweep.workers import run_workers

    ctx = prepare_sweep(config, sweep_file, overrides, **replace)
    plan = plan_workers(ctx.spec.workers, ctx.spec.gpus_per_worker, visible_gpus())
    # the workers read a plain count from sweep.json (``auto`` resolved here, once)
    ctx = dataclasses.replace(ctx, spec=ctx.spec.model_copy(update={"workers": plan.count}))
    spec = ctx.spec
    with quiet_optuna():
        study = open_study(make_storage(ctx.storage, spec), ctx.study_name, spec, ctx.base_config())
    study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json", by_alias=True))
    ctx = ctx.with_parent(start_parent(ctx, study))
    ctx.save()
    budget = spec.budget()
    used = sum(trial_status.counts(t) for t in study.get_trials(deepcopy=False))
    echo(f"sweep {ctx.study_name}: {spec.method} over {', '.join(spec.parameters)}; "
         f"{'until the timeout' if budget is None else f'{budget} trials'}, {spec.direction} {spec.metric}")
    echo(f"storage {mask(ctx.storage)}; sweep directory {ctx.sweep_dir}")
    if used:
        echo(f"resuming: {used} trial(s) already done or under way")
    if plan.message:
        echo(plan.message)
    try:
        if plan.in_process:
            code = run_worker(ctx, 0, echo)
        else:
            result = run_workers(ctx, plan, echo)
            errors = [c for c in result.exit_codes if c > 0 and c not in (130, 143)]
            code = 128 + result.signum if result.signum is not None else (errors[0] if errors else 0)
    except BaseException:
        finish_parent(ctx, [], None, "FAILED")
        raise
    interrupted = code in (130, 143)
    if not interrupted:
        _wait_for_trial_finishers(study)
    report = build_report(study, ctx, plots=plots and not interrupted)
    finish_parent(ctx, list(report.files.values()), report.best, "KILLED" if interrupted else "FINISHED")
    if interrupted:
        echo("interrupted: running trials were checkpointed; run the same command again to resume")
    elif report.best is None and code == 0:
        code = 1
    return SweepOutcome(ctx, code, report)


def _wait_for_trial_finishers(study: Any) -> None:
    """Each trial's MLflow run is completed by a detached process after the trial
    (``kiln.tracking.finisher``): wait for them, so that MLflow holds every trial when ``kiln sweep``
    returns, as its report does."""
    from kiln.tracking.finisher import wait_for_finisher

    for trial in study.get_trials(deepcopy=False):
        run_dir = trial.user_attrs.get("run_dir")
        if run_dir:
            wait_for_finisher(run_dir)


def open_report(target: str, storage: str | None = None, plots: bool = True) -> tuple[SweepContext, SweepReport]:
    """The report of a sweep directory, or of a study by name (``storage``: where it lives)."""
    ctx = _find_context(target, storage)
    if storage is not None:
        ctx = SweepContext(ctx.sweep_dir, ctx.study_name, storage, ctx.spec, ctx.base,
                           ctx.tracking_uri, ctx.parent_run_id)
    study = load_study(ctx)
    fail_stale(study)  # a trial whose worker died shows as lost (and queued again), not running
    report = build_report(study, ctx, plots=plots)
    finish_parent(ctx, list(report.files.values()), report.best, None)
    return ctx, report


def load_study(ctx: SweepContext) -> optuna.Study:
    require_optuna()
    import optuna

    storage = make_storage(ctx.storage, ctx.spec)
    try:
        return optuna.load_study(study_name=ctx.study_name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise SweepError(
            f"no study {ctx.study_name!r} in {mask(ctx.storage)}; it holds: {', '.join(names) or 'none'}"
        ) from None


def _find_context(target: str, storage: str | None) -> SweepContext:
    path = Path(target)
    if (path / CONTEXT_FILE).is_file():
        return SweepContext.load(path)
    local = RunConfig().output_dir / "sweeps" / target
    if (local / CONTEXT_FILE).is_file():
        return SweepContext.load(local)
    if storage is None:
        raise SweepError(
            f"{target!r} is neither a sweep directory nor a study with one in {local.parent}; pass "
            "the sweep directory (<output_dir>/sweeps/<study>), or the study name with --storage URL"
        )
    return _context_from_study(target, storage)


def _context_from_study(name: str, storage: str) -> SweepContext:
    """Rebuild the context from what kiln keeps in the study itself (another machine's sweep)."""
    require_optuna()
    import optuna

    url = with_driver(storage)
    try:
        attrs = optuna.load_study(study_name=name, storage=url).user_attrs
    except KeyError:
        names = optuna.get_all_study_names(url)
        raise SweepError(f"no study {name!r} in {mask(storage)}; it holds: {', '.join(names) or 'none'}") from None
    except Exception as exc:  # sqlalchemy's errors: a bad URL, an unreachable server (as make_storage)
        raise SweepError(f"cannot open the study storage {mask(storage)}: {exception_line(exc)}",
                         hint="pass --storage sqlite:////abs/path/study.db or postgresql://user@host:5432/db") from None
    if SPEC_ATTR not in attrs:
        raise SweepError(f"study {name!r} was not made by `kiln sweep`: it has no {SPEC_ATTR} attribute")
    spec = SweepSpec.model_validate(attrs[SPEC_ATTR])
    base = attrs["kiln.base_config"]
    parent = attrs.get(PARENT_ATTR) or {}
    sweep_dir = (Path(base["run"]["output_dir"]) / "sweeps" / name).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return SweepContext(sweep_dir, name, storage, spec, base,
                        str(parent.get("tracking_uri", "")), parent.get("run_id"))
