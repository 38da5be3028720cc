"""``kiln report``: one self-contained HTML page per run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kiln.cli.main import main
from kiln.eval.report import build_report
from tests.conftest import require_tool

CHROMIUM = Path("/usr/bin/chromium")


def test_report_is_self_contained_with_metrics_and_images(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir)]) == 0  # evaluates the test split first
    path = run_dir / "report.html"
    assert f"written: {path}" in capsys.readouterr().out
    page = path.read_text()
    for heading in ("Overview", "Metrics", "Per class (test split)", "Inference cost", "Plots"):
        assert f"<h2>{heading}</h2>" in page
    assert "test_f1_macro" in page and "latency_p99_ms" in page
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == 3 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)  # nothing fetched from anywhere
    assert "<script" not in page


def test_report_without_eval_shows_only_what_exists(run_dir: Path) -> None:
    page = build_report(run_dir, evaluate=False).read_text()
    assert "<h2>Metrics</h2>" in page and "<h2>Plots</h2>" not in page
    assert not (run_dir / "eval").exists()


def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    require_tool(CHROMIUM.exists(), f"headless rendering needs {CHROMIUM}: apt-get install chromium")
    path = build_report(run_dir)
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         "--window-size=1200,2000", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_report_and_gate_of_a_model_without_its_summary(run_dir: Path) -> None:
    """A model fetched from the registry may come without summary.json: both still work, from
    what there is; a damaged summary.json is an error naming it, never an empty section."""
    from kiln.errors import RunError
    from kiln.eval.gate_run import collect_metrics

    (run_dir / "summary.json").unlink()
    page = build_report(run_dir, evaluate=False).read_text()
    assert "<h2>Overview</h2>" in page and "<td>status</td>" not in page and "<h2>Metrics</h2>" not in page
    assert collect_metrics(run_dir, "test") == {}
    (run_dir / "summary.json").write_text('{"status": ')
    with pytest.raises(RunError, match=f"^{run_dir / 'summary.json'} is not valid JSON"):
        build_report(run_dir, evaluate=False)
