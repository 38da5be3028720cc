"""The sweep's results, read from the study at any time: a table of trials sorted by the metric,
the best values, ``best.yaml`` (a ready-to-train config) and the plots.

Written into the sweep directory: ``trials.csv``, ``best.yaml``, ``report.json`` and ``plots/``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.config.loader import to_yaml
from kiln.runs.layout import write_json, write_text
from kiln.sweep import trials as trial_status
from kiln.sweep.context import SweepContext

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

_RANK = {"completed": 0, "pruned": 1, "running": 2, "waiting": 3, "failed": 4}


@dataclass(frozen=True)
class SweepReport:
    """What ``kiln sweep`` prints at the end and ``kiln sweep-report`` prints at any time."""

    study_name: str
    metric: str
    direction: str
    rows: list[dict[str, Any]]  # one per trial, best first
    counts: dict[str, int]  # trials per kiln status
    best: dict[str, Any] | None  # number, value, params, run_dir
    files: dict[str, Path] = field(default_factory=dict)  # name -> written file
    skipped_plots: dict[str, str] = field(default_factory=dict)  # plot -> why not drawn

    @property
    def budget_used(self) -> int:
        return sum(self.counts[s] for s in trial_status.COUNTED)


def build_report(study: optuna.Study, ctx: SweepContext, plots: bool = True) -> SweepReport:
    """Read the study and write the report files into ``ctx.sweep_dir``."""
    trials = study.get_trials(deepcopy=False)
    metric, direction = ctx.spec.metric, ctx.spec.direction
    rows = sorted((trial_row(t, ctx) for t in trials), key=lambda r: _sort_key(r, metric, direction))
    best = _best(study, ctx)
    out = ctx.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {"trials.csv": _write_csv(rows, out / "trials.csv")}
    if best is not None:
        cfg = ctx.best_config(best["params"])
        header = (f"# best of sweep {ctx.study_name}: {ctx.spec.metric}={best['value']:.6g} "
                  f"(trial {best['number']})\n# train it: kiln train -c {out / 'best.yaml'}\n")
        write_text(out / "best.yaml", header + to_yaml(cfg))
        files["best.yaml"] = out / "best.yaml"
    skipped: dict[str, str] = {}
    if plots:
        from kiln.sweep.plots import draw_plots

        drawn, skipped = draw_plots(study, ctx.spec, out / "plots")
        files.update({f"{name}.png": path for name, path in drawn.items()})
    report = SweepReport(ctx.study_name, ctx.spec.metric, ctx.spec.direction, rows,
                         trial_status.summary_counts(trials), best, files, skipped)
    write_json(out / "report.json", {
        "study": ctx.study_name, "metric": ctx.spec.metric, "direction": ctx.spec.direction,
        "counts": report.counts, "best": best, "skipped_plots": skipped, "trials": rows,
    })
    return report


def trial_row(trial: FrozenTrial, ctx: SweepContext) -> dict[str, Any]:
    """One line of the table: the trial's status, value, parameters and what happened to it."""
    attrs = trial.user_attrs
    status = trial_status.status(trial)
    value = trial.value
    if value is None and trial.intermediate_values:  # pruned: its last reported value
        value = trial.intermediate_values[max(trial.intermediate_values)]
    row: dict[str, Any] = {"trial": trial.number, "status": status, ctx.spec.metric: value}
    for path, param in ctx.spec.parameters.items():
        row[path] = param.decode(trial.params[path]) if path in trial.params else None
    row["epochs"] = attrs.get("epochs")
    row["duration_s"] = round(trial.duration.total_seconds(), 1) if trial.duration is not None else None
    row["note"] = _note(trial, status)
    row["run_dir"] = attrs.get("run_dir")
    return row


def _note(trial: FrozenTrial, status: str) -> str:
    attrs = trial.user_attrs
    retry = trial_status.retry_of(trial)
    parts = [f"retry of #{retry}"] if retry is not None else []
    if attrs.get("resumed_from") and status != "waiting":
        parts.append(f"resumed from {attrs['resumed_from']}")
    if status == "pruned":
        parts.append(f"pruned at epoch {attrs.get('pruned_at_epoch', trial.last_step)}")
    elif status in ("failed", "interrupted") and attrs.get("error"):
        parts.append(str(attrs["error"]))
    elif status in ("duplicate", "surplus"):
        parts.append(str(attrs.get("reason", "")))
    elif status == "lost":
        parts.append("its worker stopped sending heartbeats; queued again")
    return "; ".join(parts)


def _sort_key(row: dict[str, Any], metric: str, direction: str) -> tuple[int, float, int]:
    """Completed trials first, best first; then pruned ones (by their last value); then the rest."""
    value = row[metric]
    rank = _RANK.get(row["status"], 5)
    if not isinstance(value, (int, float)):
        return rank, 0.0, row["trial"]
    return rank, -value if direction == "maximize" else value, row["trial"]


def _best(study: optuna.Study, ctx: SweepContext) -> dict[str, Any] | None:
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    trial = study.best_trial
    params = {p: spec.decode(trial.params[p]) for p, spec in ctx.spec.parameters.items()}
    return {"number": trial.number, "value": trial.value, "params": params,
            "run_dir": trial.user_attrs.get("run_dir"), "final": trial.user_attrs.get("final", {})}


def _write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    if not rows:
        path.write_text("", encoding="utf-8")
        return path
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    return path
