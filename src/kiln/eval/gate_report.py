"""A gate's verdict for machines and CI services: JSON, markdown and JUnit XML.

``kiln gate --format`` picks one (the table for people is the CLI's own). Each says, per
criterion, the metric, the operator, the required and the measured value and whether it passed,
plus the overall verdict and the model it judged:

- ``json``: everything, for scripts (``to_dict``; its ``format_version`` changes when a key does);
- ``markdown``: a table for a CI job summary (``$GITHUB_STEP_SUMMARY``) or a pull-request comment;
- ``junit``: JUnit XML, which CI services show as test results: one test case per criterion, a
  ``<failure>`` for a criterion the model missed (its message: measured against required) and an
  ``<error>`` for one that could not be judged because its metric was never measured (its message
  names the metrics that were).

>>> from pathlib import Path
>>> from kiln.runs.gates import evaluate_gates, parse_gates
>>> report = GateReport(Path("runs/digits"), evaluate_gates(parse_gates(["test_accuracy>=0.9"]),
...                     {"test_accuracy": 0.85}), "--require", [], "runs/digits")
>>> failure_message(report.results[0])
'measured 0.85, required >= 0.9 (short by 0.05)'
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any

from kiln.eval.gate_run import GateReport
from kiln.runs.gates import GateResult
from kiln.runs.layout import read_json_if_present

FORMATS = ("table", "markdown", "json", "junit")
FORMAT_VERSION = 1


def model_info(report: GateReport) -> dict[str, Any]:
    """Which model was judged: what the caller named, the run's name and its directory."""
    meta = read_json_if_present(report.run_dir / "models" / "model.json") or {}
    return {"source": report.source or str(report.run_dir), "run": str(meta.get("run") or report.run_dir.name),
            "run_dir": str(report.run_dir)}


def to_dict(report: GateReport) -> dict[str, Any]:
    """The JSON report: verdict, model, one record per criterion, and every metric known."""
    return {
        "format_version": FORMAT_VERSION,
        "verdict": "pass" if report.passed else "fail",
        "passed": report.passed,
        "model": model_info(report),
        "criteria_from": report.criteria_from,
        "measured_now": list(report.measured),
        "criteria": [_criterion(r) for r in report.results],
        "metrics": dict(sorted(report.metrics.items())),
    }


def _criterion(r: GateResult) -> dict[str, Any]:
    return {"criterion": str(r.gate), "metric": r.gate.metric, "operator": r.gate.op,
            "required": r.gate.threshold, "measured": r.measured, "passed": r.passed,
            "margin": r.margin, "note": r.note or None}


def to_markdown(report: GateReport) -> str:
    """A markdown section: the verdict as a heading, then one table row per criterion; notes on
    criteria that could not be judged follow the table (they are too long for a cell)."""
    model = model_info(report)
    verdict = "passed ✅" if report.passed else "failed ❌"
    lines = [
        f"### kiln gate {verdict}",
        "",
        f"Model `{_code(model['source'])}` (run `{_code(model['run'])}`), criteria from "
        f"{report.criteria_from}" + (f"; measured now: {', '.join(report.measured)}" if report.measured else "")
        + f". {sum(r.passed for r in report.results)} of {len(report.results)} passed.",
        "",
        "| criterion | required | measured | result | margin |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in report.results:
        lines.append(
            f"| `{_code(r.gate.metric)}` | {_cell(r.gate.op)} {_number(r.gate.threshold)} "
            f"| {'not measured' if r.measured is None else _number(r.measured)} "
            f"| {'✅ pass' if r.passed else '❌ FAIL'} | {'-' if r.margin is None else f'{r.margin:+.6g}'} |"
        )
    notes = [f"- `{_code(str(r.gate))}`: {_cell(r.note)}" for r in report.results if r.note]
    return "\n".join([*lines, *(["", *notes] if notes else []), ""])


def failure_message(r: GateResult) -> str:
    """Measured against required, in one line (the note when the metric was not measured)."""
    if r.measured is None:
        return r.note or f"metric {r.gate.metric!r} was not measured"
    text = f"measured {_number(r.measured)}, required {r.gate.op} {_number(r.gate.threshold)}"
    if r.margin is None:
        return text
    if r.passed:
        return f"{text} (margin {_number(r.margin)})"
    return f"{text} (short by {_number(-r.margin)})" if r.margin < 0 else f"{text} (does not meet it)"


def to_junit(report: GateReport, timestamp: datetime | None = None) -> str:
    """JUnit XML: a ``testsuites`` holding one ``testsuite`` (the model) of one ``testcase`` per
    criterion, named by the criterion (``test_accuracy>=0.98``). Built with ElementTree, so every
    name and message is escaped as XML requires."""
    model = model_info(report)
    failures = sum(1 for r in report.results if not r.passed and r.measured is not None)
    errors = sum(1 for r in report.results if r.measured is None)
    counts = {"tests": str(len(report.results)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", {"name": "kiln gate", **counts, "time": "0"})
    when = (timestamp or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    suite = ET.SubElement(root, "testsuite", {"name": f"kiln gate {model['run']}", **counts,
                                               "skipped": "0", "time": "0", "timestamp": when})
    properties = ET.SubElement(suite, "properties")
    for name, value in (("source", model["source"]), ("run", model["run"]), ("run_dir", model["run_dir"]),
                        ("criteria_from", report.criteria_from), ("verdict", "pass" if report.passed else "fail")):
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for r in report.results:
        case = ET.SubElement(suite, "testcase", {"name": str(r.gate), "classname": "kiln.gate", "time": "0"})
        message = failure_message(r)
        if r.measured is None:
            ET.SubElement(case, "error", {"message": message, "type": "MetricNotMeasured"}).text = message
        elif not r.passed:
            ET.SubElement(case, "failure", {"message": message, "type": "GateFailed"}).text = f"{r.gate}: {message}"
        else:
            ET.SubElement(case, "system-out").text = message
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data.decode("utf-8") + "\n"


def render(report: GateReport, fmt: str) -> str:
    """The report as ``fmt`` (markdown, json or junit; the table is drawn by the CLI)."""
    import json

    if fmt == "markdown":
        return to_markdown(report)
    if fmt == "json":
        return json.dumps(_finite(to_dict(report)), indent=2, allow_nan=False) + "\n"
    if fmt == "junit":
        return to_junit(report)
    raise ValueError(f"format {fmt!r} is not one of markdown, json, junit")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity (strict parsers such as jq refuse Python's): they become the
    strings "nan", "inf", "-inf", so a NaN metric still reads as measured (and failing)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _number(value: float) -> str:
    return f"{value:.6g}"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: a pipe would end the cell, a newline the row."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return _cell(text).replace("`", "'")
