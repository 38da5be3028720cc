"""Counting the calls of a real function in a test: the function still runs, so a test that
counts decodes or reads proves a cache was used without replacing what it counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Counter:
    """Calls of a real function, counted (the function still runs)."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real, self.calls = real, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.real(*args)
