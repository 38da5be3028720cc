"""The event list, the callback hooks and the loop docstring agree one to one."""

from __future__ import annotations

import inspect

from kiln.train import events
from kiln.train.callback import Callback
from kiln.train.events import Event


def test_every_event_has_exactly_one_hook_and_back() -> None:
    hooks = {name for name, _ in inspect.getmembers(Callback, inspect.isfunction) if name.startswith("on_")}
    assert hooks == {event.hook for event in Event}
    assert len(Event) == 10


def test_loop_docstring_marks_every_event() -> None:
    doc = events.__doc__ or ""
    for event in Event:
        assert f"-> {event.value}" in doc, event
