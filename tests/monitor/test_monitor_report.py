"""``kiln monitor report``: a log written by the server's own monitoring (real writer thread,
real SQLite) for the tiny digits model, half like the validation data and half brightened; the
page names the drifted columns, embeds its plots, fetches nothing, and renders in headless
chromium. A state directory alone is enough (the server copied the reference into it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kiln.cli.main import main
from kiln.models.reference import read_reference
from kiln.monitor.options import MonitorOptions
from kiln.monitor.serving import Monitoring
from kiln.monitor.summary import InputSummary
from kiln.serve.inputs import Preprocessor
from tests.conftest import require_tool
from tests.serve.helpers import expected_probabilities

CHROMIUM = Path("/usr/bin/chromium")


def _log(run: Path, state_dir: Path, raw: np.ndarray) -> None:
    """Log ``raw`` digit rows as ``kiln serve`` does: its Monitoring, its normalization."""
    from kiln.models.package import load_package

    spec = load_package(run).spec
    pre = Preprocessor(spec, 256)
    monitoring = Monitoring.open(MonitorOptions(state_dir), "digits", "3", [str(i) for i in range(10)],
                                 InputSummary(pre.shape, pre.mean, pre.std, pre.image_model),
                                 reference=read_reference(run / "models"))
    monitoring.start()
    try:
        for start in range(0, len(raw), 100):
            rows = raw[start:start + 100]
            batch = pre.from_json(f'{{"instances": {rows.tolist()}}}'.encode())
            monitoring.log.record(f"req{start}", batch, expected_probabilities(run, rows))
    finally:
        monitoring.stop()


@pytest.fixture(scope="module")
def served(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the run whose serve_state/ holds 200 predictions like validation, then 200
    brightened ones."""
    from sklearn.datasets import load_digits

    run = tmp_path_factory.mktemp("report") / trained_run.name
    shutil.copytree(trained_run, run)
    digits = load_digits().data / 16.0
    rows = digits[np.random.default_rng(0).choice(len(digits), 400, replace=False)]
    rows[200:] = np.clip(rows[200:] + 0.15, 0.0, 1.0)
    _log(run, run / "serve_state", rows)
    return run


def _psi_rows(page: str) -> dict[str, str]:
    """Each compared item's verdict cell in the drift table."""
    return dict(re.findall(r"<tr><td>([^<]+)</td><td>[^<]*</td><td class=\"num\">[^<]+</td>"
                           r"<td class=\"(?:drift|ok)\">(DRIFT|ok)</td></tr>", page))


def test_report_of_a_run_compares_the_latest_window_with_training(served: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "drift.html"
    assert main(["monitor", "report", str(served), "--output", str(output), "--window", "200"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^digits version 3: 200 predictions; input PSI max \d+\.\d{3}, prediction PSI", out, re.M)
    assert f"written: {output}" in out
    page = output.read_text()
    for heading in ("Overview", "Drift (population stability index)", "Plots"):
        assert f"<h2>{heading}</h2>" in page
    verdicts = _psi_rows(page)
    assert verdicts["brightness"] == verdicts["channel_mean_0"] == "DRIFT"  # the last 200: brightened
    assert set(verdicts) == {"predicted classes", "top-1 confidence", "brightness", "channel_mean_0", "channel_std_0"}
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == 2 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:|//|file:)', page) and "<script" not in page


def test_report_of_a_state_directory_alone_with_a_larger_window(served: Path, tmp_path: Path) -> None:
    """The state directory copied away from its run: the reference copy kiln serve wrote there
    is what the report reads. Over all 400 predictions half are brightened: still drift."""
    state = tmp_path / "state"
    shutil.copytree(served / "serve_state", state)
    output = tmp_path / "all.html"
    assert main(["monitor", "report", str(state), "-o", str(output)]) == 0
    page = output.read_text()
    assert "the last 400 predictions (at most 1000)" in page and "144 samples of the validation split" in page
    assert _psi_rows(page)["brightness"] == "DRIFT"
    few = tmp_path / "few.html"
    assert main(["monitor", "report", str(state), "-o", str(few), "--window", "50"]) == 0
    assert "Only 50 predictions: under 100" in few.read_text()


def test_report_errors_name_the_problem(served: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    shutil.copytree(served / "serve_state", state)
    for copy in state.glob("reference_*.json"):
        copy.unlink()
    output = tmp_path / "r.html"
    assert main(["monitor", "report", str(state), "-o", str(output)]) == 1
    assert "no reference statistics for digits version 3" in capsys.readouterr().err
    assert main(["monitor", "report", str(served), "-o", str(output), "--version", "9"]) == 2
    assert "holds no predictions of version '9'; it holds '3'" in capsys.readouterr().err
    assert main(["monitor", "report", str(tmp_path / "nothing"), "-o", str(output)]) == 2
    assert not output.exists()


def test_report_renders_in_headless_chromium(served: Path, tmp_path: Path) -> None:
    require_tool(CHROMIUM.exists(), f"headless rendering needs {CHROMIUM}: apt-get install chromium")
    output = tmp_path / "drift.html"
    assert main(["monitor", "report", str(served), "-o", str(output)]) == 0
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         "--window-size=1200,2000", output.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    live_bars = (np.abs(pixels - (0xDD, 0x84, 0x52)).max(axis=1) <= 8).sum()
    assert live_bars > 2000  # the browser decoded and drew the embedded plots: live traffic's bars
