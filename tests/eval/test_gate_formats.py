"""``kiln gate --format markdown|json|junit [--output FILE]``: each report read back the way its
consumer reads it (JUnit XML by junitparser, as CI services do; markdown's table row by row; JSON
by json), and the exit code stays the gate's whatever the format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from kiln.cli.main import main
from kiln.eval.gate_report import to_dict
from kiln.eval.gate_run import GateReport
from kiln.runs.gates import evaluate_gates, parse_gates

# one criterion that passes, one the tiny run misses (it reaches about 0.9), one naming no metric
CRITERIA = ["test_accuracy>=0.5", "test_accuracy>=0.999", "test_acc<1"]


def _gate(run: Path, *args: str) -> int:
    return main(["gate", str(run), *(a for c in CRITERIA for a in ("--require", c)), *args])


def _test_accuracy(run: Path) -> float:
    return float(json.loads((run / "summary.json").read_text())["test"]["test_accuracy"])


def test_junit_has_a_case_per_criterion_failures_say_measured_vs_required(
        trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "reports" / "gate.xml"  # the folder does not exist yet
    assert _gate(trained_run, "--format", "junit", "--output", str(report)) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and f"junit report written to {report}" in out  # the table stays in the log

    xml = JUnitXml.fromfile(str(report))
    (suite,) = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (3, 1, 1, 0)
    cases = {case.name: case for case in suite}
    assert list(cases) == CRITERIA
    assert cases["test_accuracy>=0.5"].is_passed
    measured = _test_accuracy(trained_run)
    (failure,) = cases["test_accuracy>=0.999"].result
    assert isinstance(failure, Failure)
    assert failure.message == f"measured {measured:.6g}, required >= 0.999 (short by {0.999 - measured:.6g})"
    (error,) = cases["test_acc<1"].result
    assert isinstance(error, Error)
    assert "'test_acc' was not measured" in error.message and "Did you mean 'test_accuracy'?" in error.message
    assert "Known: " in error.message and "val_loss" in error.message  # the metrics that do exist
    properties = {p.name: p.value for p in suite.properties()}
    assert properties["run"] == trained_run.name and properties["verdict"] == "fail"


def test_junit_of_a_passing_gate_on_stdout_exits_0(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gate", str(trained_run), "--require", "test_accuracy>=0.5", "--require", "test_loss<10",
                 "--format", "junit"])
    captured = capsys.readouterr()
    assert code == 0 and "all 2 criteria passed" in captured.err  # stdout is the XML alone
    xml = JUnitXml.fromstring(captured.out)
    assert [(s.tests, s.failures, s.errors) for s in xml] == [(2, 0, 0)]
    assert all(case.is_passed for suite in xml for case in suite)


def test_markdown_renders_one_table_row_per_criterion(trained_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    summary = tmp_path / "step_summary.md"  # what $GITHUB_STEP_SUMMARY names in a GitHub job
    assert _gate(trained_run, "--format", "markdown", "--output", str(summary)) == 1
    capsys.readouterr()
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("### kiln gate failed")
    lines = text.splitlines()
    start = lines.index("| criterion | required | measured | result | margin |")
    assert lines[start + 1] == "| --- | --- | --- | --- | --- |"
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    measured = f"{_test_accuracy(trained_run):.6g}"
    assert rows == [
        ["`test_accuracy`", ">= 0.5", measured, "✅ pass", f"{_test_accuracy(trained_run) - 0.5:+.6g}"],
        ["`test_accuracy`", ">= 0.999", measured, "❌ FAIL", f"{_test_accuracy(trained_run) - 0.999:+.6g}"],
        ["`test_acc`", "< 1", "not measured", "❌ FAIL", "-"],
    ]
    assert any(line.startswith("- `test_acc<1`: metric 'test_acc' was not measured") for line in lines)


def test_json_round_trips_every_criterion_and_the_verdict(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _gate(trained_run, "--format", "json") == 1
    data = json.loads(capsys.readouterr().out)  # stdout holds the JSON and nothing else
    assert data["verdict"] == "fail" and data["passed"] is False
    assert data["model"] == {"source": str(trained_run), "run": trained_run.name, "run_dir": str(trained_run)}
    assert [(c["metric"], c["operator"], c["required"], c["passed"]) for c in data["criteria"]] == [
        ("test_accuracy", ">=", 0.5, True), ("test_accuracy", ">=", 0.999, False), ("test_acc", "<", 1.0, False)]
    assert data["criteria"][0]["measured"] == _test_accuracy(trained_run) == data["metrics"]["test_accuracy"]
    assert data["criteria"][2]["measured"] is None and "Known: " in data["criteria"][2]["note"]


def test_json_holds_no_nan_a_strict_parser_would_refuse() -> None:
    results = evaluate_gates(parse_gates(["val_loss<1"]), {"val_loss": math.nan})
    report = GateReport(Path("runs/x"), results, "--require", [], "runs/x", {"val_loss": math.nan})
    from kiln.eval.gate_report import render

    text = render(report, "json")
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert data["criteria"][0]["measured"] == "nan" and data["passed"] is False
    assert to_dict(report)["verdict"] == "fail"


def test_usage_errors_exit_2_and_write_no_report(trained_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "gate.xml"
    assert main(["gate", str(trained_run), "--require", "test_accuracy>>0.5", "--format", "junit",
                 "--output", str(report)]) == 2
    assert not report.exists()
    assert main(["gate", str(trained_run), "--require", "test_accuracy>=0.5", "--output", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["gate", str(trained_run), "--format", "xml"])
    assert exc.value.code == 2


def test_no_measure_hint_still_names_the_known_metrics(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", str(trained_run), "--require", "min_class_recall>=0.5", "--no-measure",
                 "--format", "json"]) == 1
    (criterion,) = json.loads(capsys.readouterr().out)["criteria"]
    assert "without --no-measure" in criterion["note"] and "test_accuracy" in criterion["note"]
