"""The Tracker protocol: where params, metrics, events and artifacts of a run go.

A tracker need not be thread-safe: the fan-out calls each one from a single thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

Scope = Literal["step", "epoch", "test", "system"]
MetricRecord = tuple[Mapping[str, float], int, Scope]  # the arguments of one log_metrics call


@runtime_checkable
class Tracker(Protocol):
    """Receives a run's records. ``scope`` says whether metrics belong to a step, an epoch or the test."""

    name: str

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None: ...

    def log_event(self, event: str, data: Mapping[str, Any]) -> None: ...

    def log_artifact(self, path: Path) -> None: ...

    def close(self, status: str) -> None: ...


def log_metric_records(tracker: Tracker, records: Sequence[MetricRecord]) -> None:
    """Give ``records`` to ``tracker`` in one call when it takes them that way (an optional
    ``log_metric_records``: one database write, or one message to a worker), else one by one."""
    many = getattr(tracker, "log_metric_records", None)
    if many is not None:
        many(records)
        return
    for metrics, step, scope in records:
        tracker.log_metrics(metrics, step, scope)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: nested config as flat params."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
