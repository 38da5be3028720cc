"""A named catalog of factories, so users pick models and datasets by name with did-you-mean help.

Entries may be registered lazily as ``"package.module:attr"`` strings, which keeps ``import kiln``
and config validation free of heavy imports (torch is only imported when a factory is built).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kiln.errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, options: list[str], prefix: str = "") -> str:
    """Return ``" Did you mean 'x'?"`` for the closest option (shown with ``prefix``), or ''."""
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" Did you mean {prefix + close[0]!r}?" if close else ""


def import_object(path: str, what: str = "object") -> Any:
    """Import ``"package.module:attr"`` (attr may be dotted); raise ConfigError that says what failed."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"{what} import path {path!r} is malformed: expected 'package.module:attribute', "
            "e.g. 'mypkg.models:build_model'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import module {module_name!r} for {what} {path!r}: {exc}. "
            "Is the package installed (pip install -e .) or on PYTHONPATH?"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attr!r} (needed for {what} {path!r})"
            ) from None
    return obj


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One catalog entry: a name, a one-line description and a factory (or its import path).

    ``options`` is the entry's own options model (a pydantic model: its fields, defaults and
    descriptions are the knobs the factory reads); the factory receives a validated instance.
    """

    name: str
    description: str
    factory: Callable[..., T] | str
    params: tuple[str, ...] = ()  # the config knobs this entry reads (its options model's, if any)
    options: type[Any] | None = None

    def load(self) -> Callable[..., T]:
        if isinstance(self.factory, str):
            loaded: Callable[..., T] = import_object(self.factory, f"catalog entry {self.name!r}")
            return loaded
        return self.factory


class Catalog(Generic[T]):
    """Maps names to factories.

    >>> c: Catalog[int] = Catalog("number")
    >>> c.register("one", lambda: 1, "the number one")
    >>> c.build("one")
    1
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        factory: Callable[..., T] | str,
        description: str = "",
        params: tuple[str, ...] = (),
        options: type[Any] | None = None,
    ) -> None:
        if name in self._entries:
            raise ConfigError(
                f"{self.kind} {name!r} is already registered", received=name,
                hint="register yours under another name, or skip registering and name it by its "
                     "import path in the config (target: package.module:attr)",
            )
        if options is not None and not params:
            # the knobs of its options model, besides `name`, are what the factory reads
            params = tuple(key for key in options.model_fields if key != "name")
        self._entries[name] = Entry(name, description, factory, params, options)

    def unregister(self, name: str) -> None:
        """Remove ``name``: a test that registered its own entry puts the catalog back after it."""
        self.check(name)
        del self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[name] for name in self.names())

    def check(self, name: str) -> None:
        """Raise ConfigError naming the known entries when ``name`` is not one of them."""
        if name not in self._entries:
            raise ConfigError(self.unknown_message(name), received=name)

    def unknown_message(self, name: str) -> str:
        return (
            f"unknown {self.kind} {name!r}.{did_you_mean(name, self.names())} "
            f"Known: {', '.join(self.names())}"
        )

    def get(self, name: str) -> Callable[..., T]:
        self.check(name)
        return self._entries[name].load()

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)
