"""The per-epoch history of a run, for training curves: logs/training_log.csv, else events.jsonl."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from kiln.tracking.jsonl import read_events

History = dict[str, list[float]]  # column -> one value per epoch (NaN where missing)


def read_history(root: Path) -> History:
    """Epoch metrics of the run at ``root``; empty when it logged none.

    The CSV exists only when the csv tracker was on; events.jsonl is always written (it is the
    run's source of truth), so it is the fallback.
    """
    csv_path = root / "logs" / "training_log.csv"
    rows = _csv_rows(csv_path) if csv_path.is_file() else _event_rows(root / "logs" / "events.jsonl")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: [row.get(k, math.nan) for row in rows] for k in keys}


def _csv_rows(path: Path) -> list[dict[str, float]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [{k: _number(v) for k, v in row.items() if k} for row in csv.DictReader(f)]


def _event_rows(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    by_epoch: dict[float, dict[str, float]] = {}
    for event in read_events(path):  # the one reader of events.jsonl (it skips a torn last line)
        if event.get("event") == "metrics" and event.get("scope") == "epoch":
            metrics = {k: _number(v) for k, v in (event.get("metrics") or {}).items()}
            epoch = metrics.get("epoch", float(len(by_epoch) + 1))
            by_epoch[epoch] = metrics  # a resumed run may repeat an epoch: keep the latest
    return [by_epoch[e] for e in sorted(by_epoch)]


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
