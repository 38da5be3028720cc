"""``kiln gate``: criteria from the command line or the config, measured on demand, exit 0 or 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiln.cli.main import main
from kiln.config import load_config, to_yaml
from kiln.errors import UsageError
from kiln.eval import gate_run as gate_module
from kiln.eval.gate_run import collect_metrics, gate_run
from tests.conftest import run_cli


def test_gate_passes_with_exit_0_and_prints_the_table(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gate", str(trained_run), "--require", "test_accuracy>=0.5", "--require", "best_val_loss<5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "test_accuracy" in out and ">= 0.5" in out and "PASS" in out and "all 2 criteria passed" in out


def test_gate_fails_with_exit_1_saying_by_how_much(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gate", str(trained_run), "--require", "test_accuracy>=0.999", "--require", "test_loss<10"])
    captured = capsys.readouterr()
    assert code == 1 and "FAIL" in captured.out and "PASS" in captured.out
    assert "test_accuracy>=0.999: measured" in captured.err and "short by" in captured.err


def test_unknown_metric_fails_listing_the_known_ones(trained_run: Path) -> None:
    report = gate_run(trained_run, ["test_acuracy>=0.5"], measure=False)
    (result,) = report.results
    assert not report.passed and result.measured is None
    assert "Did you mean 'test_accuracy'?" in result.note and "Known: " in result.note and "val_loss" in result.note


def test_eval_and_cost_metrics_are_measured_on_demand(run_dir: Path) -> None:
    criteria = ["min_class_recall>=0.0", "latency_p99_ms<10000", "size_mb<10", "parameters<1e6",
                "val_f1_macro>=0"]
    report = gate_run(run_dir, criteria)
    assert report.passed, [r.to_dict() for r in report.results]
    assert report.measured == ["test split", "val split", "inference cost"]
    assert (run_dir / "eval" / "metrics_test.json").is_file() and (run_dir / "eval" / "cost.json").is_file()
    assert not list((run_dir / "eval").glob("*.png"))  # gating measures numbers, it draws nothing
    metrics = collect_metrics(run_dir, "test")
    assert metrics["min_class_recall"] == metrics["test_min_class_recall"]
    assert gate_run(run_dir, criteria).measured == []  # the second time it is all recorded


def test_no_measure_hints_how_to_measure(run_dir: Path) -> None:
    (result,) = gate_run(run_dir, ["min_class_recall>=0.5"], measure=False).results
    assert not result.passed and "without --no-measure" in result.note
    assert not (run_dir / "eval").exists()


def set_gate_require(run_dir: Path, *criteria: str) -> None:
    """Write the run's config.yaml again with ``gate.require`` set, through the real schema."""
    override = "gate.require=[" + ", ".join(f"'{c}'" for c in criteria) + "]"
    config = load_config(run_dir / "config.yaml", [override])
    assert config.gate.require == list(criteria)
    (run_dir / "config.yaml").write_text(to_yaml(config))


def test_criteria_come_from_the_config_when_not_given(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="no criteria to gate on"):
        gate_run(run_dir)  # the run was trained with the schema's default: gate.require is empty
    set_gate_require(run_dir, "test_accuracy>=0.5", "best_val_loss<5")
    assert gate_module.config_criteria(run_dir) == ["test_accuracy>=0.5", "best_val_loss<5"]
    report = gate_run(run_dir)
    assert report.criteria_from == "config gate.require" and report.passed
    assert [str(r.gate) for r in report.results] == ["test_accuracy>=0.5", "best_val_loss<5"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report.results[0].measured == summary["test"]["test_accuracy"]

    set_gate_require(run_dir, "test_accuracy>=0.999")  # the tiny run reaches about 0.9
    assert main(["gate", str(run_dir)]) == 1
    assert "test_accuracy>=0.999: measured" in capsys.readouterr().err
    by_flag = gate_run(run_dir, ["test_accuracy>=0.5"])  # --require replaces the config's criteria
    assert by_flag.criteria_from == "--require" and by_flag.passed
    assert [str(r.gate) for r in by_flag.results] == ["test_accuracy>=0.5"]


def test_usage_errors_exit_2(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", str(trained_run)]) == 2
    assert "no criteria to gate on" in capsys.readouterr().err
    assert main(["gate", str(trained_run), "--require", "test_accuracy>>0.5"]) == 2
    assert "is not a number" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_exit_codes_in_a_subprocess(trained_run: Path) -> None:
    ok = run_cli("gate", str(trained_run), "--require", "test_accuracy>=0.5")
    bad = run_cli("gate", str(trained_run), "--require", "test_accuracy>=0.999")
    assert (ok.returncode, bad.returncode) == (0, 1), bad.stderr
    assert "PASS" in ok.stdout and "FAIL" in bad.stdout and "Traceback" not in bad.stderr
    summary = json.loads((trained_run / "summary.json").read_text())
    assert f"{summary['test']['test_accuracy']:.4f}" in ok.stdout
