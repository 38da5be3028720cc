"""``kiln train --quiet`` in a CI log: plain lines, no progress bar, no carriage returns or
terminal escapes on a pipe, and on a terminal no bar either; what it prints is where the run lives
and the summary table, the same whatever the number of epochs (never a line per batch)."""

from __future__ import annotations

from pathlib import Path

from kiln.testing.tiny import TINY_OVERRIDES
from tests.conftest import run_cli
from tests.terminal import on_a_terminal

# the tiny config with the progress bar left on (the default): only --quiet may turn it off
ARGS = [o for o in TINY_OVERRIDES if not o.startswith("run.progress")] + [
    "training.epochs=3", "tracking.backends=[jsonl]", "checkpoint.enabled=false"]
BAR = ("epoch 1/3", "\x1b[2K", "\x1b[?25l", "━")  # what rich's live progress bar draws


def test_quiet_on_a_pipe_prints_plain_lines_and_the_summary(tmp_path: Path) -> None:
    result = run_cli("train", *ARGS, f"run.output_dir={tmp_path}", "--quiet")
    assert result.returncode == 0, result.stderr
    for stream in (result.stdout, result.stderr):
        assert "\r" not in stream and "\x1b" not in stream  # nothing redrawn, no colour codes
        assert not any(mark in stream for mark in BAR)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run directory: ") and lines[1].strip() == "summary"
    assert any("test_accuracy" in line for line in lines) and any("epochs trained" in line for line in lines)
    # the start line, the table's title, its 3 rules and its 13 rows: none per epoch or batch
    assert len(lines) <= 18, result.stdout


def test_quiet_on_a_terminal_draws_no_bar(tmp_path: Path) -> None:
    code, shown = on_a_terminal(["train", *ARGS, f"run.output_dir={tmp_path}", "--quiet"])
    assert code == 0, shown
    assert "\r" not in shown and not any(mark in shown for mark in BAR), shown
    assert "run directory: " in shown and "test_accuracy" in shown


def test_a_pipe_without_quiet_gets_one_plain_line_per_epoch(tmp_path: Path) -> None:
    """A CI log of a long run shows it is alive: a line per epoch, nothing redrawn."""
    result = run_cli("train", *ARGS, f"run.output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"], result.stdout
    assert all("train_loss" in line and "val_loss" in line and line.endswith(" s") for line in epochs)
