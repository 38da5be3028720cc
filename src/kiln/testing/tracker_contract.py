"""The contract every tracker must honour, as a function and as a test class to subclass.

Run it against your own tracker in your tests, the way kiln's tests run it against every entry of
the TRACKERS catalog. Subclass ``TrackerContract`` (pytest collects the subclass and its inherited
tests) and give it a ``tracker`` fixture:

>>> class TestMyTracker(TrackerContract):  # doctest: +SKIP
...     @pytest.fixture
...     def tracker(self, tmp_path: Path) -> Tracker:
...         return MyTracker(tmp_path / "out")

or call ``check_tracker(MyTracker(...), tmp_path)`` in a test of your own.
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


class TrackerContract:
    """The tracker contract as tests: subclass it as ``Test...`` and define a ``tracker`` fixture
    that returns a fresh tracker (it may use ``tmp_path``). Each test closes the tracker it got.

    The class imports nothing of pytest: its tests only ask for fixtures by name.
    """

    def test_is_a_tracker(self, tracker: Tracker) -> None:
        """It has every method of kiln's Tracker protocol and a name to report failures by."""
        assert isinstance(tracker, Tracker), (
            f"{type(tracker).__name__} lacks a method of kiln's Tracker protocol "
            "(log_params, log_metrics, log_event, log_artifact, close) or its name"
        )
        assert isinstance(tracker.name, str) and tracker.name, f"name must be a non-empty string, got {tracker.name!r}"
        tracker.close("completed")

    def test_takes_every_record_kiln_sends(self, tracker: Tracker, tmp_path: Path) -> None:
        """Every scope, NaN and infinite values, nested params, unknown events, missing artifacts."""
        check_tracker(tracker, tmp_path)

    def test_closes_before_any_record(self, tracker: Tracker) -> None:
        """A run can fail before its first record (a bad dataset path): close must still work."""
        tracker.close("failed")

    def test_takes_a_resumed_runs_replayed_history(self, tracker: Tracker) -> None:
        """On resume kiln replays events.jsonl into fresh trackers: params, then metrics of steps
        the tracker may already hold from the first process, then the run's summary event."""
        tracker.log_params({"run.seed": 1})
        log_metric_records(tracker, [({"loss": 0.5}, 1, "epoch"), ({"loss": 0.4}, 2, "epoch")])
        log_metric_records(tracker, [({"loss": 0.5}, 1, "epoch"), ({"loss": 0.4}, 2, "epoch"),
                                     ({"loss": 0.3}, 3, "epoch")])
        tracker.log_event("summary", {"event": "summary", "status": "completed", "best": None})
        tracker.close("completed")
