"""Built-in callbacks."""

from kiln.train.callbacks.early_stopping import EarlyStopping
from kiln.train.callbacks.lr_schedule import LRSchedule
from kiln.train.callbacks.monitor import Monitor
from kiln.train.callbacks.nan_guard import NanGuard
from kiln.train.callbacks.progress import EpochLines, ProgressBar
from kiln.train.callbacks.tracking import TrackingCallback

__all__ = ["EarlyStopping", "EpochLines", "LRSchedule", "Monitor", "NanGuard", "ProgressBar", "TrackingCallback"]
