"""``kiln eval`` on a real tiny run: metrics, report files, valid PNGs and inference cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from kiln.cli.main import main
from kiln.eval.history import read_history
from kiln.eval.plots import curves_png
from kiln.eval.run_eval import evaluate_run


def assert_png(path: Path, min_side: int = 200) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert min_side <= width <= 4000 and min_side <= height <= 4000, image.size


def test_eval_writes_metrics_reports_plots_and_cost(run_dir: Path) -> None:
    result = evaluate_run(run_dir, "test")
    summary = json.loads((run_dir / "summary.json").read_text())
    m = result.metrics
    # the meter's numbers are those training reported, and sklearn's accuracy agrees with them
    assert m["test_accuracy"] == pytest.approx(summary["test"]["test_accuracy"])
    assert m["test_loss"] == pytest.approx(summary["test"]["test_loss"])
    assert m["test_balanced_accuracy"] > 0 and 0 < m["test_min_class_recall"] <= m["test_recall_macro"]
    assert m["test_log_loss"] == pytest.approx(m["test_loss"], rel=1e-4)  # cross-entropy, no smoothing
    assert json.loads(result.path.read_text()) == m
    eval_dir = run_dir / "eval"
    names = {p.name for p in result.artifacts}
    assert names == {
        "classification_report_test.txt", "classification_report_test.json", "confusion_matrix_test.csv",
        "confusion_matrix_test.png", "worst_examples_test.png", "training_curves.png",
    }
    for png in ("confusion_matrix_test.png", "worst_examples_test.png", "training_curves.png"):
        assert_png(eval_dir / png)
    report = json.loads((eval_dir / "classification_report_test.json").read_text())
    assert len(report["per_class"]) == 10 and sum(r["support"] for r in report["per_class"]) == m["test_samples"]
    csv_rows = (eval_dir / "confusion_matrix_test.csv").read_text().splitlines()
    assert len(csv_rows) == 11 and csv_rows[0].startswith("true \\ predicted,0,1")
    assert sum(int(v) for row in csv_rows[1:] for v in row.split(",")[1:]) == m["test_samples"]
    assert set(result.cost) >= {"latency_p50_ms", "latency_p99_ms", "latency_b32_p99_ms", "size_mb", "parameters"}
    assert result.cost["parameters"] == summary["parameters"]
    assert result.cost["size_mb"] == pytest.approx((run_dir / "models" / "model.safetensors").stat().st_size / 1e6)
    assert 0 < result.cost["latency_p50_ms"] <= result.cost["latency_p99_ms"]
    assert json.loads((eval_dir / "cost.json").read_text())["metrics"] == result.cost


def test_eval_cli_prints_tables_and_files(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(run_dir), "--split", "val", "--no-plots", "--no-cost"]) == 0
    out = capsys.readouterr().out
    assert "val_f1_macro" in out and "metrics_val.json" in out and "inference cost" not in out
    assert not list((run_dir / "eval").glob("*.png"))


@pytest.mark.slow
def test_no_plots_never_imports_matplotlib(run_dir: Path) -> None:
    code = (
        "import sys; from kiln.eval.run_eval import evaluate_run; "
        f"evaluate_run({str(run_dir)!r}, plots=False, cost=False); "
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_training_curves_from_events_when_there_is_no_csv(run_dir: Path) -> None:
    from_csv = read_history(run_dir)
    (run_dir / "logs" / "training_log.csv").unlink()
    from_events = read_history(run_dir)
    assert from_events["epoch"] == [1.0, 2.0] and from_events["val_loss"] == pytest.approx(from_csv["val_loss"])
    path = curves_png(from_events, run_dir / "curves.png", "curves")
    assert path is not None
    assert_png(path)
    assert curves_png({}, run_dir / "none.png", "nothing") is None


def test_eval_of_a_missing_run_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path)]) == 2  # a usage error: the path is no run
    assert "has no config.yaml" in capsys.readouterr().err
