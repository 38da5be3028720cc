"""The contract every tracker must honour; run it against your own tracker in your tests:

>>> from kiln.testing.tracker_contract import check_tracker
>>> check_tracker(MyTracker(...), tmp_path)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from kiln.tracking.base import Tracker, log_metric_records


def check_tracker(tracker: object, tmp_path: Path) -> None:
    """Exercise every method with the records kiln sends; raises AssertionError or the tracker's own
    error on a breach. Trackers must accept every scope, NaN values, nested params as flat keys,
    unknown events, and artifact paths that do not exist (a run may not have written them).
    A tracker with the optional ``log_metric_records`` gets records of several steps through it."""
    assert isinstance(tracker, Tracker), f"{type(tracker).__name__} does not implement kiln's Tracker protocol"
    assert isinstance(tracker.name, str) and tracker.name
    tracker.log_params({"run.seed": 1, "model.hidden": [16, 8], "data.path": None, "training.lr": 0.01})
    for step, scope in enumerate(("epoch", "step", "test", "system"), start=1):
        tracker.log_metrics({"loss": 0.5, "accuracy": 1.0, "nonfinite": float("nan")}, step, scope)  # type: ignore[arg-type]
    tracker.log_metrics({"loss": 0.25, "accuracy": 1.0, "nonfinite": float("inf")}, 5, "epoch")
    log_metric_records(tracker, [({"loss": 0.2}, 6, "step"), ({"loss": 0.1, "nonfinite": float("nan")}, 7, "step")])
    log_metric_records(tracker, [])
    tracker.log_event("fit_start", {"epoch": 0, "global_step": 0})
    tracker.log_event("an_event_kiln_may_add_later", {"anything": [1, 2, 3]})
    artifact = tmp_path / "contract-artifact.txt"
    artifact.write_text("kiln tracker contract\n", encoding="utf-8")
    tracker.log_artifact(artifact)
    tracker.log_artifact(tmp_path / "does-not-exist.txt")
    tracker.close("completed")
