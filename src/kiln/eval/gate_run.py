"""``gate_run``: judge a run against quality and cost criteria, measuring what is missing.

Metrics a gate can name, merged in this order (later wins):

- ``summary.json`` (see :func:`kiln.runs.gates.metrics_from_summary`): ``test_accuracy``, ``best_val_loss``...
- ``eval/metrics_<split>.json`` of every evaluated split: ``test_f1_macro``, ``val_min_class_recall``...
- the gated split's eval metrics without their prefix: ``min_class_recall`` is ``test_min_class_recall``
  when gating the test split;
- ``eval/cost.json``: ``latency_p99_ms``, ``size_mb``, ``parameters``...

A criterion naming an eval or cost metric that was not measured yet triggers that measurement
(``measure=True``), so ``kiln gate RUN --require 'latency_p99_ms<100'`` works on a fresh run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from kiln.errors import UsageError
from kiln.eval.latency import COST_METRICS
from kiln.eval.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS
from kiln.runs.gates import EVAL_SPLITS, GateResult, all_passed, evaluate_gates, parse_gates
from kiln.runs.rundir import RunDir

SPLITS = EVAL_SPLITS
QUALITY_METRICS = tuple(dict.fromkeys(("loss", "accuracy", *CLASSIFICATION_METRICS, *REGRESSION_METRICS)))


@dataclass(frozen=True)
class GateReport:
    """What ``gate_run`` found; :mod:`kiln.eval.gate_report` writes it as a table, markdown, JSON
    or JUnit XML."""

    run_dir: Path
    results: list[GateResult]
    criteria_from: str  # "--require" or "config gate.require"
    measured: list[str]  # what was measured on demand ("test split", "inference cost")
    source: str = ""  # what the caller named: the run directory or a models:/ URI
    metrics: dict[str, float] = field(default_factory=dict)  # every metric the criteria could name

    @property
    def passed(self) -> bool:
        return all_passed(self.results)


def gate_run(path: str | Path, require: Sequence[str] = (), split: str = "test",
             measure: bool = True) -> GateReport:
    """Check ``require`` (or, when empty, the run config's ``gate.require``) against the run."""
    from kiln.eval.run_eval import run_root

    root = run_root(path)
    criteria, source = (list(require), "--require") if require else (config_criteria(root), "config gate.require")
    if not criteria:
        raise UsageError(
            "no criteria to gate on: pass --require 'METRIC OP NUMBER' (e.g. --require "
            "'test_accuracy>=0.98'), or set gate.require in the run's config"
        )
    if split not in SPLITS:
        raise UsageError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    gates = parse_gates(criteria)
    metrics = collect_metrics(root, split)
    measured: list[str] = []
    if measure:
        missing = {g.metric for g in gates} - set(metrics)
        measured = _measure(root, missing, split)
        if measured:
            metrics = collect_metrics(root, split)
    results = evaluate_gates(gates, metrics)
    if not measure:
        results = [_with_hint(r, metrics) for r in results]
    return GateReport(root, results, source, measured, str(path), metrics)


def config_criteria(root: Path) -> list[str]:
    """``gate.require`` from the run's config.yaml (empty by default)."""
    return list(RunDir(root).read_config().gate.require)


def collect_metrics(root: Path, split: str) -> dict[str, float]:
    """Every metric already measured for the run (see the module docstring for the order)."""
    from kiln.runs.gates import recorded_metrics

    metrics = recorded_metrics(root)
    prefix = f"{split}_"
    aliases = {k[len(prefix):]: v for k, v in metrics.items()
               if k.startswith(prefix) and k[len(prefix):] in QUALITY_METRICS}
    return {**metrics, **aliases}


def _measure(root: Path, missing: set[str], split: str) -> list[str]:
    from kiln.eval.run_eval import evaluate_run, measure_cost

    done = []
    splits = {split for m in missing if m in QUALITY_METRICS}
    splits |= {s for m in missing for s in SPLITS if m.startswith(f"{s}_") and m[len(s) + 1:] in QUALITY_METRICS}
    for name in sorted(splits):
        evaluate_run(root, name, plots=False, cost=False)
        done.append(f"{name} split")
    if missing & set(COST_METRICS):
        from kiln.models.package import load_package

        package = load_package(root)
        spec = package.spec
        measure_cost(root, package.model, spec.input_shape,
                     spec.num_classes if spec.task == "language_modeling" else None)
        done.append("inference cost")
    return done


def _with_hint(result: GateResult, metrics: dict[str, float]) -> GateResult:
    """Point out a metric that was only missing because measuring was switched off (still
    naming the metrics that are recorded, as every missing metric's note does)."""
    metric = result.gate.metric
    if result.measured is not None or not _measurable(metric):
        return result
    return replace(result, note=f"{metric!r} is not recorded yet; gate without --no-measure "
                                f"(or run kiln eval) to measure it. Known: {', '.join(sorted(metrics)) or '(none)'}")


def _measurable(metric: str) -> bool:
    if metric in COST_METRICS or metric in QUALITY_METRICS:
        return True
    return any(metric.startswith(f"{s}_") and metric[len(s) + 1:] in QUALITY_METRICS for s in SPLITS)




