"""Tracking: events.jsonl first, then a background fan-out to CSV, TensorBoard and others."""

from kiln.tracking.base import Tracker, flatten
from kiln.tracking.jsonl import JsonlTracker, read_events
from kiln.tracking.multi import MultiTracker, build_trackers

__all__ = ["JsonlTracker", "MultiTracker", "Tracker", "build_trackers", "flatten", "read_events"]
