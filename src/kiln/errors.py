"""Errors a user can cause. The CLI prints their message without a traceback (``--debug`` shows it)."""

from __future__ import annotations

from types import ModuleType


class KilnError(Exception):
    """Base of every error caused by input a user controls: config, files, data, requests."""

    exit_code = 1


class ConfigError(KilnError):
    """The config (file, YAML, overrides or values) is invalid; the message lists every problem."""

    exit_code = 2


class UsageError(KilnError):
    """The command line itself is wrong (a missing argument, an unknown verb)."""

    exit_code = 2


class DataError(KilnError):
    """A dataset cannot be found, read or split as configured."""


class ModelError(KilnError):
    """A model cannot be built or loaded from what the config or model package says."""


class CheckpointError(KilnError):
    """A checkpoint is missing, corrupt, unsafe or incompatible."""


class TrackingError(KilnError):
    """A tracker cannot be set up (a wrong URI, a missing extra)."""


class RegistryError(KilnError):
    """A registered model, version or alias cannot be found or promoted."""


class ExportError(KilnError):
    """An export failed or its parity check did not hold."""


class SweepError(KilnError):
    """A sweep cannot start or go on: the study, its storage or its workers are not usable."""


class DistributedError(KilnError):
    """A process group could not be formed, or a rank failed or went missing."""


class ServeError(KilnError):
    """The model server cannot start with what it was given."""


class MissingExtraError(KilnError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the optional package {module!r}, which is not installed. "
            f"Install it with: pip install 'kiln-ml[{extra}]'"
        )


def exception_line(exc: BaseException) -> str:
    """``Type: first line of the message``: what a library's exception says, without its traceback
    (and without a final full stop, so that a sentence can follow)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(":. ")


def require_extra(module: str, extra: str) -> ModuleType:
    """Import the optional ``module``, or raise MissingExtraError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(module, extra) from None
