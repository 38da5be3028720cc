"""Checks of what the user typed, made before any work starts.

A wrong argument is a usage error (exit 2, see :mod:`kiln.errors`) whichever library function would
have noticed it later: a path that is no run directory, a file where a directory is needed, a
``models:/`` URI, alias or version number that cannot be well formed. The libraries keep their own
checks for callers from Python; these only make the command's answer the same for every verb.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from kiln.errors import PathError, RegistryError, UsageError


def run_dir(text: str, needs: Sequence[str] = (), up: int = 0) -> Path:
    """The run directory ``text`` names (see :meth:`kiln.runs.RunDir.open`)."""
    from kiln.runs.rundir import RunDir

    return RunDir.open(text, needs, up).root


def source(text: str) -> str:
    """A run directory, model package or export path (checked by the library that reads it), or a
    ``models:/`` URI, which must be well formed."""
    from kiln.registry.resolve import is_model_uri, parse_model_uri

    if is_model_uri(text):
        registry_value(parse_model_uri, text)
    return text


def output_dir(text: str, option: str = "--output-dir") -> Path:
    """A directory of runs: it may not exist yet, but it cannot be a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise PathError(f"{option} {text} is a file, not a directory of runs",
                        hint="pass the directory runs are written to (run.output_dir, default runs)")
    return path


def registry_value(check: Callable[[str], object], text: str) -> None:
    """Run one of the registry's pure checks of a value (an alias, a version, a URI); its refusal
    is about the command line, so it is a usage error here, with the same message."""
    try:
        check(text)
    except RegistryError as exc:
        raise UsageError(exc.message, field=exc.field, received=exc.received,
                         allowed=exc.allowed, hint=exc.hint) from None
