"""``kiln monitor assets``: the alert thresholds of a served model, and the files that use them.

The thresholds come, in this order, from an explicit option, from the model's ``gate.require``
(the criteria ``kiln gate`` checks, saved with the run's config), or from ``DEFAULTS``:

- accuracy: ``test_accuracy``, ``accuracy``, ``val_accuracy`` or ``best_val_accuracy`` (the first
  of those the gate names) with ``>=`` or ``>``: the model was only shipped that good, so live
  accuracy under it is an alert;
- latency: ``latency_p99_ms`` or ``latency_b1_p99_ms`` with ``<`` or ``<=``: the same number bounds
  the served ``/predict`` p99 (which adds HTTP and queueing to the model's own time: loosen it with
  ``--latency-p99-ms`` if the gate measured the bare model);
- the 5xx share, the drift PSI (0.2: the usual "significant shift" of the population stability
  index) and the feedback count an accuracy alert needs have no gate criterion: defaults only.

:mod:`kiln.monitor.assets_rules` and :mod:`kiln.monitor.assets_dashboard` build the Prometheus
rules and the Grafana dashboard from a :class:`Thresholds`; :func:`write_assets` writes both.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import PathError, UsageError

RULES_FILE = "prometheus-rules.yml"
DASHBOARD_FILE = "grafana-dashboard.json"

DEFAULTS: dict[str, float] = {
    "accuracy": 0.9,  # live accuracy under this alerts
    "min_samples": 100,  # ...once the accuracy window holds this many feedback labels
    "latency_p99_ms": 500.0,  # /predict p99 over this alerts
    "error_rate": 0.01,  # share of /predict and /feedback answers that are 5xx
    "drift_psi": 0.2,  # PSI over this alerts (0.1-0.2 moderate, over 0.2 significant shift)
}
# the gate metrics that bound each threshold, most telling first (live traffic is unseen data)
ACCURACY_GATES = ("test_accuracy", "accuracy", "val_accuracy", "best_val_accuracy")
LATENCY_GATES = ("latency_p99_ms", "latency_b1_p99_ms")
# the option that sets each threshold
FLAGS = {"accuracy": "--accuracy-threshold", "min_samples": "--min-samples",
         "latency_p99_ms": "--latency-p99-ms", "error_rate": "--error-rate", "drift_psi": "--drift-psi"}
# a gate's operator says when it passes; the alert fires when it would not (== bounds nothing)
_ALERT_OP = {">=": "<", ">": "<=", "<": ">=", "<=": ">"}


@dataclass(frozen=True)
class Bound:
    """One alert threshold: fire when ``metric alert_op value``; ``source`` says where it came from
    (``gate.require 'test_accuracy>=0.95'``, ``--accuracy-threshold`` or ``default``)."""

    value: float
    alert_op: str
    source: str


@dataclass(frozen=True)
class Thresholds:
    """Every threshold the rules and the dashboard use.

    >>> t = thresholds(["test_accuracy>=0.95"])
    >>> (t.accuracy.value, t.accuracy.alert_op, t.accuracy.source)
    (0.95, '<', "gate.require 'test_accuracy>=0.95'")
    """

    accuracy: Bound
    min_samples: int
    latency_p99_ms: Bound
    error_rate: Bound
    drift_psi: Bound
    job: str | None = None  # scope every rule to this Prometheus job (None: every kiln server)


def thresholds(criteria: Sequence[str] = (), overrides: Mapping[str, float | None] | None = None,
               job: str | None = None) -> Thresholds:
    """The thresholds for a model whose gate is ``criteria``; an ``overrides`` value that is not
    None wins over the gate (keys as in ``DEFAULTS``). UsageError for a value out of range."""
    from kiln.runs.gates import parse_gates

    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check(given)
    gates = {g.metric: g for g in parse_gates(criteria)}

    def bound(name: str, gate_names: Sequence[str], alert_op: str) -> Bound:
        if name in given:
            return Bound(float(given[name]), alert_op, FLAGS[name])
        for metric in gate_names:
            gate = gates.get(metric)
            fires = _ALERT_OP.get(gate.op, "") if gate is not None else ""
            if gate is not None and fires[:1] == alert_op:  # a bound on the side that matters
                return Bound(gate.threshold, fires, f"gate.require '{gate}'")
        return Bound(DEFAULTS[name], alert_op, "default")

    return Thresholds(
        accuracy=bound("accuracy", ACCURACY_GATES, "<"),
        min_samples=int(given.get("min_samples", DEFAULTS["min_samples"])),
        latency_p99_ms=bound("latency_p99_ms", LATENCY_GATES, ">"),
        error_rate=bound("error_rate", (), ">"),
        drift_psi=bound("drift_psi", (), ">"),
        job=job,
    )


def model_criteria(source: str) -> list[str]:
    """``gate.require`` of a run directory or ``models:/NAME@ALIAS`` (the run's saved config)."""
    from kiln.eval.gate_run import config_criteria
    from kiln.eval.run_eval import run_root

    return config_criteria(run_root(source))


def write_assets(output: Path, limits: Thresholds, title: str = "kiln serving") -> list[Path]:
    """Write the rules and the dashboard into ``output`` (created); the paths written. Each file
    goes to a temporary name first and is renamed into place, so a failure leaves no half file."""
    from kiln.monitor.assets_dashboard import dashboard
    from kiln.monitor.assets_rules import rules

    if output.exists() and not output.is_dir():
        raise PathError(f"--output {output} is a file: name a directory for {RULES_FILE} and {DASHBOARD_FILE}")
    output.mkdir(parents=True, exist_ok=True)
    texts = {
        RULES_FILE: _yaml(rules(limits)),
        DASHBOARD_FILE: json.dumps(dashboard(limits, title), indent=2) + "\n",
    }
    written = []
    for name, text in texts.items():
        path = output / name
        partial = output / f".{name}.partial"
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
        written.append(path)
    return written


def _yaml(data: object) -> str:
    """YAML with multi-line strings (PromQL) as literal blocks, readable as written."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=100, allow_unicode=True)


def _check(given: Mapping[str, float]) -> None:
    problems = []
    for name, value in given.items():
        if name not in FLAGS:
            raise ValueError(f"unknown threshold {name!r}; known: {', '.join(FLAGS)}")
        flag = FLAGS[name]
        if not math.isfinite(value):
            problems.append(f"{flag} must be a finite number, got {value}")
        elif name in ("accuracy", "error_rate") and not 0 <= value <= 1:
            problems.append(f"{flag} is a share: between 0 and 1, got {value:g}")
        elif name == "min_samples" and (value < 1 or value != int(value)):
            problems.append(f"{flag} must be a whole number of feedback labels, at least 1, got {value:g}")
        elif value <= 0 and name in ("latency_p99_ms", "drift_psi"):
            problems.append(f"{flag} must be positive, got {value:g}")
    if problems:
        raise UsageError("; ".join(problems))
