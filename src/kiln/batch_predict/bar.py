"""The progress bar of ``kiln predict`` on stderr: rows done, rows per second and time left.

Time left comes from the rows when the input knows its count (Parquet, NumPy, images) and from the
bytes read when it does not (CSV, JSON lines), since counting a file's rows would read it twice.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class ProgressBar:
    def __init__(self, source: Any, rows: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.source = source
        self.by_rows = source.total_rows is not None
        self.start_rows = rows
        self.started = time.monotonic()
        self.progress = Progress(TextColumn("predict"), BarColumn(), TextColumn("{task.fields[text]}"),
                                 TimeRemainingColumn(), console=Console(file=sys.stderr),
                                 transient=False)
        total = source.total_rows if self.by_rows else source.total_bytes
        self.task = self.progress.add_task("predict", total=total, text="")

    def __enter__(self) -> Any:
        self.progress.__enter__()
        return self.update

    def update(self, rows: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (rows - self.start_rows) / elapsed
        done = rows if self.by_rows else self.source.read_bytes
        self.progress.update(self.task, completed=done, text=f"{rows:,} rows, {rate:,.0f} rows/s")

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)
