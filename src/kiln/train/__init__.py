"""The training loop, its events, state and callbacks."""

from kiln.train.callback import Callback
from kiln.train.events import Event
from kiln.train.state import TrainState
from kiln.train.trainer import FitResult, Trainer

__all__ = ["Callback", "Event", "FitResult", "TrainState", "Trainer"]
