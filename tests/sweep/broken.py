"""A model factory that always fails: a trial that uses it must fail without stopping the sweep."""

from __future__ import annotations

from typing import Any


def broken_model(**options: Any) -> Any:
    raise ValueError("this model is broken on purpose")
