"""The sweep's three plots as PNG: optimization history, parameter importances, parallel coordinates.

Drawn with matplotlib's object API (``matplotlib.figure.Figure``), like :mod:`kiln.eval.plots`:
Agg rendering, no pyplot global state, safe anywhere. Optuna's own ``optuna.visualization
.matplotlib`` goes through pyplot and is marked experimental; the importances themselves come
from Optuna (``optuna.importance.get_param_importances``, fANOVA with a fixed seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.eval.plots import new_figure
from kiln.sweep.spec import SweepSpec

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure
    from optuna.trial import FrozenTrial



class PlotSkipped(Exception):
    """Not enough trials (or variety) to draw this plot yet."""


def draw_plots(study: optuna.Study, spec: SweepSpec, out_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Draw every plot into ``out_dir``: (name -> PNG path, name -> why it was skipped)."""
    from optuna.trial import TrialState

    out_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    drawn: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for name, draw in (("optimization_history", _history), ("param_importances", _importances),
                       ("parallel_coordinates", _parallel)):
        path = out_dir / f"{name}.png"
        try:
            fig = draw(study, trials, done, spec)
        except PlotSkipped as exc:
            skipped[name] = str(exc)
            path.unlink(missing_ok=True)
            continue
        fig.savefig(path)
        drawn[name] = path
    return drawn, skipped



def _history(study: optuna.Study, trials: Sequence[FrozenTrial], done: Sequence[FrozenTrial], spec: SweepSpec) -> Figure:
    from optuna.trial import TrialState

    if not done:
        raise PlotSkipped("no completed trial yet")
    fig = new_figure(7, 4)
    ax = fig.add_subplot()
    ax.scatter([t.number for t in done], [float(t.value or 0.0) for t in done], s=18, label="completed", zorder=3)
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, s=18, marker="x", color="0.6",
                   label="pruned (last epoch reported)")
    better = max if spec.direction == "maximize" else min
    best: list[float] = []
    for t in sorted(done, key=lambda t: t.number):
        assert t.value is not None
        best.append(t.value if not best else better(best[-1], t.value))
    ax.step(sorted(t.number for t in done), best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(spec.metric)
    ax.set_title(f"optimization history ({spec.direction} {spec.metric})")
    ax.legend(loc="best", fontsize=8)
    return fig


def _importances(study: optuna.Study, trials: Sequence[FrozenTrial], done: Sequence[FrozenTrial], spec: SweepSpec) -> Figure:
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    if len(done) < 2:
        raise PlotSkipped(f"importances need 2 completed trials, there are {len(done)}")
    try:
        scores = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:
        raise PlotSkipped(f"importances could not be computed: {exc}") from None
    names = sorted(scores, key=lambda n: scores[n])
    fig = new_figure(7, 1.2 + 0.5 * len(names))
    ax = fig.add_subplot()
    ax.barh(names, [float(scores[n]) for n in names], color="tab:blue")
    for y, name in enumerate(names):
        ax.text(float(scores[name]), y, f" {float(scores[name]):.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"importance for {spec.metric} (fANOVA, share of variance)")
    ax.set_title("parameter importances")
    return fig


def _parallel(study: optuna.Study, trials: Sequence[FrozenTrial], done: Sequence[FrozenTrial], spec: SweepSpec) -> Figure:
    if len(done) < 2:
        raise PlotSkipped(f"parallel coordinates need 2 completed trials, there are {len(done)}")
    names = list(spec.parameters)
    axes = [_axis(name, spec, done) for name in names]
    values = [float(t.value) for t in done if t.value is not None]
    axes.append(_numeric_axis(spec.metric, values, log=False))
    fig = new_figure(1.8 * len(axes) + 2, 4.5)
    ax = fig.add_subplot()
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis" if spec.direction == "maximize" else "viridis_r"]
    low, high = min(values), max(values)
    order = sorted(range(len(done)), key=lambda i: values[i] * (1 if spec.direction == "maximize" else -1))
    for i in order:  # best drawn last, on top
        ys = [axis["positions"][i] for axis in axes]
        shade = 0.5 if high == low else (values[i] - low) / (high - low)
        ax.plot(range(len(axes)), ys, color=cmap(shade), alpha=0.8, linewidth=1.2)
    for x, axis in enumerate(axes):
        ax.axvline(x, color="0.3", linewidth=0.8)
        for y, label in axis["ticks"]:
            ax.text(x, y, f" {label}", fontsize=7, va="center")
    ax.set_xticks(range(len(axes)), [a["name"] for a in axes], rotation=15)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"parallel coordinates (colour: {spec.metric}, brighter is better)")
    return fig


def _axis(name: str, spec: SweepSpec, done: Sequence[FrozenTrial]) -> dict[str, Any]:
    param = spec.parameters[name]
    raw = [t.params.get(name) for t in done]
    if param.choice is not None:
        levels = [param.encode(v) for v in param.choice]
        span = max(len(levels) - 1, 1)
        return {"name": name,
                "positions": [levels.index(v) / span if v in levels else 0.5 for v in raw],
                "ticks": [(i / span, str(v)) for i, v in enumerate(levels)]}
    return _numeric_axis(name, [float(v) for v in raw if v is not None], log=param.kind == "loguniform")


def _numeric_axis(name: str, values: list[float], log: bool) -> dict[str, Any]:
    scaled = [math.log10(v) if log else v for v in values]
    low, high = min(scaled), max(scaled)
    span = high - low

    def position(v: float) -> float:
        return 0.5 if span == 0 else (v - low) / span

    ticks = [(position(low), f"{min(values):.3g}"), (position(high), f"{max(values):.3g}")]
    return {"name": name, "positions": [position(v) for v in scaled], "ticks": ticks}
