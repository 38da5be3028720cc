"""The Tracker protocol: where params, metrics, events and artifacts of a run go, and the
factory protocol by which the TRACKERS catalog (``kiln.config.catalogs``) builds one.

A tracker need not be thread-safe: the fan-out builds each one on its thread and calls it only
from there. Adding a tracker is one module (the class and its ``prepare``) and one registration:

>>> from kiln.config.catalogs import TRACKERS
>>> TRACKERS.register("mine", "mypkg.tracker:prepare", "what it writes where")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kiln.config.schema import KilnConfig

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


@dataclass(frozen=True)
class TrackerSetup:
    """What a tracker may need to start: the run's whole config (its own section included, e.g.
    ``tracking.wandb``), the run's ``logs/`` directory, the run directory's name and the run's tags
    (kiln version, git commit, config hash)."""

    config: KilnConfig
    logs_dir: Path
    run_name: str
    tags: Mapping[str, str] = field(default_factory=dict)


class TrackerFactory(Protocol):
    """A TRACKERS entry: ``prepare(setup)`` is called once on the training thread before the first
    step, so a setting that cannot work (a malformed URI) fails the run before it trains; it
    returns the zero-argument constructor the fan-out thread calls, so slow imports and slow
    connections cost training nothing.

    >>> def prepare(setup: TrackerSetup) -> Callable[[], Tracker]:  # doctest: +SKIP
    ...     return functools.partial(CsvTracker, setup.logs_dir / "training_log.csv")
    """

    def __call__(self, setup: TrackerSetup) -> Callable[[], Tracker]: ...


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
