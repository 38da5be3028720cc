"""The callback protocol: one no-op hook per event, all with the signature ``on_<event>(state)``.

Subclass ``Callback`` and override the hooks you need; the Trainer only calls overridden hooks,
so an unused hook costs nothing per batch. Stateful callbacks also implement ``state_dict()`` and
``load_state_dict()`` so checkpoints carry them.
"""

from __future__ import annotations

from typing import Any

from kiln.train.events import Event
from kiln.train.state import TrainState


class Callback:
    """Base class with a no-op hook for every Event."""

    def on_fit_start(self, state: TrainState) -> None: ...
    def on_epoch_start(self, state: TrainState) -> None: ...
    def on_batch_start(self, state: TrainState) -> None: ...
    def on_batch_end(self, state: TrainState) -> None: ...
    def on_validation_start(self, state: TrainState) -> None: ...
    def on_validation_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_checkpoint(self, state: TrainState) -> None: ...
    def on_fit_end(self, state: TrainState) -> None: ...
    def on_exception(self, state: TrainState) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """Plain data (numbers, strings, lists, dicts, tensors) needed to resume this callback."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def overrides(callback: Callback, event: Event) -> bool:
    """True when ``callback`` implements the hook for ``event`` itself (not the base no-op)."""
    return getattr(type(callback), event.hook) is not getattr(Callback, event.hook)
