"""The progress bar: on a terminal (a real pseudo-terminal) it shows rows, rows per second and
time left; on a pipe or with --quiet it stays off."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.batch_predict.conftest import digits_csv
from tests.conftest import run_cli


def _on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run ``kiln ARGS`` with stderr on a pseudo-terminal; its exit code and what the terminal got."""
    leader, follower = pty.openpty()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "120", "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, "-m", "kiln", *args], stdout=subprocess.DEVNULL,
                               stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the process closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(60), b"".join(chunks).decode(errors="replace")


def test_a_bar_on_a_terminal_none_on_a_pipe(trained_run: Path, tmp_path: Path) -> None:
    digits_csv(tmp_path / "in.csv", 3000)
    common = ["predict", str(trained_run), "--input", str(tmp_path / "in.csv"), "--id-column", "id",
              "--chunk-size", "500"]
    code, terminal = _on_a_terminal([*common, "--output", str(tmp_path / "a.csv")])
    assert code == 0, terminal
    assert "3,000 rows" in terminal and "rows/s" in terminal and "0:00:00" in terminal  # time left
    piped = run_cli(*common, "--output", str(tmp_path / "b.csv"))
    assert piped.returncode == 0 and "rows/s" not in piped.stderr
    code, quiet = _on_a_terminal([*common, "--output", str(tmp_path / "c.csv"), "--quiet"])
    assert code == 0 and "rows/s" not in quiet
