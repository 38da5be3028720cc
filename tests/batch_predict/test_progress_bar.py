"""The progress bar: on a terminal (a real pseudo-terminal) it shows rows, rows per second and
time left; on a pipe or with --quiet it stays off."""

from __future__ import annotations

from pathlib import Path

from tests.batch_predict.conftest import digits_csv
from tests.conftest import run_cli
from tests.terminal import on_a_terminal


def test_a_bar_on_a_terminal_none_on_a_pipe(trained_run: Path, tmp_path: Path) -> None:
    digits_csv(tmp_path / "in.csv", 3000)
    common = ["predict", str(trained_run), "--input", str(tmp_path / "in.csv"), "--id-column", "id",
              "--chunk-size", "500"]
    code, terminal = on_a_terminal([*common, "--output", str(tmp_path / "a.csv")], stdout=False)
    assert code == 0, terminal
    assert "3,000 rows" in terminal and "rows/s" in terminal and "0:00:00" in terminal  # time left
    piped = run_cli(*common, "--output", str(tmp_path / "b.csv"))
    assert piped.returncode == 0 and "rows/s" not in piped.stderr
    code, quiet = on_a_terminal([*common, "--output", str(tmp_path / "c.csv"), "--quiet"], stdout=False)
    assert code == 0 and "rows/s" not in quiet
