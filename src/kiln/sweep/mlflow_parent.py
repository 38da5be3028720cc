"""The sweep's parent MLflow run, and nesting each trial's run under it.

Every trial is an ordinary kiln run that creates its own MLflow run (from its own process, through
kiln's tracker). It is nested afterwards: when a trial ends, its run id is read from
``<run>/logs/mlflow.json`` and the run is tagged ``mlflow.parentRunId=<parent>`` (MLflow's own
nesting tag), together with the study, the trial number, its status and its values
(``kiln.sweep.param.<path>``). So a trial shows up nested once it has ended; while it runs it is
a top-level run of the same experiment. This needs no change to the training path at all.

The parent run id is kept in the study (``kiln.mlflow_parent``), so reruns and other machines
that log to the same tracking server reuse one parent. MLflow problems never stop a sweep: they
are reported and the trials go on (their own logs hold everything).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.settings import default_artifact_root
from kiln.sweep.context import SweepContext
from kiln.sweep.study import mask
from kiln.tracking.finisher import wait_for_link

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient

log = logging.getLogger("kiln.sweep")
PARENT_ATTR = "kiln.mlflow_parent"


def _client(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return MlflowClient(uri)


def start_parent(ctx: SweepContext, study: optuna.Study) -> str | None:
    """The parent run's id (created, or reused and marked running again); None without MLflow."""
    if not ctx.uses_mlflow:
        return None
    try:
        client = _client(ctx.tracking_uri)
        stored = study.user_attrs.get(PARENT_ATTR)
        if stored and stored.get("tracking_uri") == ctx.tracking_uri:
            client.update_run(stored["run_id"], status="RUNNING")
            return str(stored["run_id"])
        run = client.create_run(_experiment_id(client, ctx), run_name=f"sweep-{ctx.study_name}", tags={
            "kiln.sweep.study": ctx.study_name, "kiln.sweep.storage": mask(ctx.storage),
            "kiln.sweep.method": ctx.spec.method, "kiln.sweep.metric": ctx.spec.metric,
            "kiln.sweep.dir": str(ctx.sweep_dir),
        })
        run_id: str = run.info.run_id
        study.set_user_attr(PARENT_ATTR, {"tracking_uri": ctx.tracking_uri, "run_id": run_id})
        winner = study.user_attrs[PARENT_ATTR]["run_id"]
        if winner != run_id:  # another machine created one at the same moment: use theirs
            client.delete_run(run_id)
            return str(winner)
        _log_spec(client, run_id, ctx)
        return run_id
    except Exception as exc:
        log.warning("MLflow: no parent run for the sweep (%s); trials are tracked on their own", exc)
        return None


def _experiment_id(client: MlflowClient, ctx: SweepContext) -> str:
    name = ctx.experiment
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    root = default_artifact_root(ctx.tracking_uri)
    try:
        return str(client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None))
    except Exception:  # a trial's tracker created it in between
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def _log_spec(client: MlflowClient, run_id: str, ctx: SweepContext) -> None:
    from mlflow.entities import Param

    spec = ctx.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    params = [Param(f"sweep.{k}", str(v)) for k, v in spec.items() if k not in ("parameters", "storage")]
    params += [Param(f"sweep.parameters.{p}", str(v)) for p, v in spec["parameters"].items()]
    client.log_batch(run_id, params=params)


def tag_trial(ctx: SweepContext, run_dir: Path, number: int, params: dict[str, Any], status: str) -> None:
    """Nest the trial's MLflow run under the parent, with the trial's values as tags."""
    if ctx.parent_run_id is None:
        return
    # The trial's MLflow worker goes on after the trial (the detached finisher), and may not have
    # created the run yet when a short trial ends: wait for the run, not for the whole finisher.
    link = wait_for_link(run_dir / "logs")
    if link is None or link.get("tracking_uri") != ctx.tracking_uri:
        return  # MLflow was off or failed for this run (its own logs say why)
    from mlflow.entities import RunTag

    tags = {"mlflow.parentRunId": ctx.parent_run_id, "kiln.sweep.study": ctx.study_name,
            "kiln.sweep.trial": str(number), "kiln.sweep.status": status}
    tags.update({f"kiln.sweep.param.{path}": str(value) for path, value in params.items()})
    try:
        _client(ctx.tracking_uri).log_batch(str(link["run_id"]), tags=[RunTag(k, v) for k, v in tags.items()])
    except Exception as exc:
        log.warning("MLflow: could not nest trial %d under the sweep's run (%s)", number, exc)


def finish_parent(ctx: SweepContext, files: list[Path], best: dict[str, Any] | None, status: str | None) -> None:
    """Log the report (plots, best.yaml, trials.csv) and the best result; end the run with
    ``status`` (FINISHED, KILLED) unless it is None."""
    if ctx.parent_run_id is None:
        return
    from mlflow.entities import Metric, RunTag

    run_id = ctx.parent_run_id
    try:
        client = _client(ctx.tracking_uri)
        for path in files:
            client.log_artifact(run_id, str(path), "plots" if path.suffix == ".png" else None)
        if best is not None:
            client.log_batch(
                run_id,
                metrics=[Metric(f"best_{ctx.spec.metric}", float(best["value"]), int(time.time() * 1000), int(best["number"]))],
                tags=[RunTag("kiln.sweep.best_trial", str(best["number"]))]
                + [RunTag(f"kiln.sweep.best.{p}", str(v)) for p, v in best["params"].items()],
            )
        if status is not None:
            client.set_terminated(run_id, status=status)
    except Exception as exc:
        log.warning("MLflow: could not log the sweep's report to its run (%s)", exc)
