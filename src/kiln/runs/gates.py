"""Quality gates such as ``test_accuracy>=0.98``: parse them, check them against measured metrics.

Pure functions with no MLflow or torch, so the registry's promotion, ``tracking.register`` and a
``kiln gate`` command all judge a model the same way. They judge what a run recorded (its
summary.json, its eval metrics), so they live with the run directory, below both the registry and
``kiln.eval``: each of those may import them, and neither has to import the other for them.

>>> results = evaluate_gates(parse_gates(["test_accuracy>=0.9", "val_loss < 0.5"]),
...                          {"test_accuracy": 0.95, "val_loss": 0.7})
>>> [(str(r.gate), r.passed) for r in results]
[('test_accuracy>=0.9', True), ('val_loss<0.5', False)]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.catalog import did_you_mean
from kiln.errors import ConfigError

if TYPE_CHECKING:
    from kiln.runs.summary import RunSummary

OPERATORS = (">=", "<=", "==", ">", "<")
SYNTAX = "METRIC OP NUMBER with OP one of >=, <=, >, <, == (e.g. 'test_accuracy>=0.98')"
# `==` on measured floats compares within this relative tolerance: exact float equality would fail
# on the last bit of a metric that is, for every practical purpose, equal.
EQUAL_REL_TOL = 1e-9
COLUMNS = ["gate", "required", "measured", "result", "margin"]

_GATE = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w./-]*)\s*(?P<op>>=|<=|==|>|<)\s*(?P<value>\S+)\s*$")


@dataclass(frozen=True)
class Gate:
    """One requirement: ``metric op threshold``."""

    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


@dataclass(frozen=True)
class GateResult:
    """A gate checked against measured metrics.

    ``margin`` is how far the measured value lies on the passing side of the threshold (negative:
    short by that much); ``None`` when the metric was not measured, in which case ``note`` says why.
    """

    gate: Gate
    measured: float | None
    passed: bool
    margin: float | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": str(self.gate), "metric": self.gate.metric, "op": self.gate.op,
            "threshold": self.gate.threshold, "measured": self.measured, "passed": self.passed,
            "margin": self.margin, "note": self.note,
        }


def parse_gate(text: str) -> Gate:
    """Parse ``"metric>=0.98"`` (whitespace allowed around the operator); ConfigError if malformed."""
    match = _GATE.match(text)
    if match is None:
        raise ConfigError(f"gate {text!r} is not a gate: expected {SYNTAX}")
    raw = match["value"]
    try:
        threshold = float(raw)
    except ValueError:
        raise ConfigError(f"gate {text!r}: threshold {raw!r} is not a number; expected {SYNTAX}") from None
    if math.isnan(threshold):
        raise ConfigError(f"gate {text!r}: threshold nan can never be met; expected {SYNTAX}")
    return Gate(match["metric"], match["op"], threshold)


def parse_gates(texts: Iterable[str]) -> list[Gate]:
    """Parse every gate, reporting all malformed ones together in one ConfigError."""
    gates, problems = [], []
    for text in texts:
        try:
            gates.append(parse_gate(text))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return gates


def margin(op: str, measured: float, threshold: float) -> float:
    """Distance of ``measured`` on the passing side of ``threshold`` (negative: on the failing side)."""
    if op in (">=", ">"):
        return measured - threshold
    if op in ("<=", "<"):
        return threshold - measured
    return -abs(measured - threshold)


def check(gate: Gate, measured: float) -> bool:
    """Whether a measured value meets the gate; NaN never does."""
    if math.isnan(measured):
        return False
    if gate.op == "==":
        return math.isclose(measured, gate.threshold, rel_tol=EQUAL_REL_TOL, abs_tol=0.0)
    passed: bool = {
        ">=": measured >= gate.threshold, "<=": measured <= gate.threshold,
        ">": measured > gate.threshold, "<": measured < gate.threshold,
    }[gate.op]
    return passed


def evaluate_gates(gates: Sequence[Gate], metrics: Mapping[str, float]) -> list[GateResult]:
    """Check each gate against ``metrics``; an unmeasured metric fails, naming those that exist."""
    known = sorted(metrics)
    results = []
    for gate in gates:
        value = metrics.get(gate.metric)
        if value is None:
            note = (
                f"metric {gate.metric!r} was not measured.{did_you_mean(gate.metric, known)} "
                f"Known: {', '.join(known) or '(none)'}"
            )
            results.append(GateResult(gate, None, False, None, note))
            continue
        measured = float(value)
        results.append(GateResult(gate, measured, check(gate, measured), margin(gate.op, measured, gate.threshold)))
    return results


def all_passed(results: Iterable[GateResult]) -> bool:
    return all(r.passed for r in results)


def gate_rows(results: Iterable[GateResult]) -> list[list[Any]]:
    """Rows for a table with columns ``COLUMNS``: gate, required, measured, PASS/FAIL, margin."""
    return [
        [r.gate.metric, f"{r.gate.op} {r.gate.threshold:g}", r.measured,
         "PASS" if r.passed else "FAIL", r.margin if r.margin is not None else r.note]
        for r in results
    ]


def describe_failures(results: Iterable[GateResult]) -> str:
    """One line per failed gate saying by how much it failed, e.g. for an error message."""
    lines = []
    for r in results:
        if r.passed:
            continue
        if r.measured is None:
            lines.append(f"{r.gate}: {r.note}")
        elif r.margin is not None and r.margin < 0:
            lines.append(f"{r.gate}: measured {r.measured:.6g}, short by {-r.margin:.6g}")
        else:
            lines.append(f"{r.gate}: measured {r.measured:.6g}, which does not meet it")
    return "\n".join(lines)


EVAL_SPLITS = ("train", "val", "test")


def recorded_metrics(root: Path) -> dict[str, float]:
    """Every metric measured for the run directory ``root``, merged (later wins): summary.json
    (``metrics_from_summary``), ``eval/metrics_<split>.json`` of each evaluated split, and
    ``eval/cost.json`` (``size_mb``, ``latency_p99_ms``...). What ``kiln gate`` measured is what
    a registration is gated on: a CI pipeline gates once, then registers on the same numbers."""
    from kiln.runs.layout import read_json_if_present
    from kiln.runs.rundir import RunDir

    summary = RunDir(root).read_summary_if_any()  # a model fetched from the registry may lack it
    metrics = metrics_from_summary(summary) if summary is not None else {}
    for split in EVAL_SPLITS:
        metrics.update(_numbers(read_json_if_present(root / "eval" / f"metrics_{split}.json")))
    cost = read_json_if_present(root / "eval" / "cost.json")
    metrics.update(_numbers(cost["metrics"] if cost is not None else None))
    return metrics


def _numbers(data: dict[str, Any] | None) -> dict[str, float]:
    """The finite numbers of a metrics record (none when it was not written)."""
    if data is None:
        return {}
    return {k: float(v) for k, v in data.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def metrics_from_summary(summary: RunSummary) -> dict[str, float]:
    """The metrics a gate can name, from a run's summary.json.

    ``test_*`` (the test split), the final epoch's ``val_*``/``train_*`` and other epoch values under
    their own names, and the best epoch's values as ``best_<name>`` (e.g. ``best_val_loss``).
    Non-finite values are left out.
    """
    metrics: dict[str, float] = {}
    best = summary.best.metrics if summary.best is not None else {}
    for prefix, section in (("best_", best), ("", summary.final), ("", summary.test)):
        for key, value in section.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                metrics[prefix + key] = float(value)
    return metrics
