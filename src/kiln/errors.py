"""Errors a user can cause. The CLI prints them without a traceback (``--debug`` shows it).

Every error names the problem in its message. Where it helps, it also carries the ``field`` at
fault (a config path such as ``training.lr``, or an option such as ``--split``), the value
``received``, what is ``allowed`` and a ``hint`` on how to fix it, all kept as attributes for
programs and rendered by ``str(err)`` in one layout, one indented line each::

    unknown split 'tset' for eval
      field: --split
      allowed: train, val, test
      hint: ...

A ``received`` value the message already quotes is not repeated, and an error made from a message
alone reads exactly as that message: a sentence that already says everything stays one sentence.

Exit codes of the ``kiln`` command, carried by each class as ``exit_code``:

- **2, usage**: the command line or the config is wrong in itself, and running it again cannot
  help until it is fixed: an unknown option or key, a value outside a fixed set (a split, an export
  format), a malformed ``models:/`` URI, or a local path that is not what the command needs (it
  does not exist, it is a file where a directory is expected, it is a directory but not a run).
  ``ConfigError``, ``UsageError`` and its ``PathError``.
- **1, failure**: the input was well formed but the work failed: a gate or parity check failed, a
  checkpoint is corrupt, a server does not answer, or a name is not (or no longer) in a store that
  was asked while doing the work (a registered model, an alias, an MLflow experiment, a study):
  a store's contents change, so the same command may be right tomorrow. Every other KilnError.
- **130 / 143**: stopped by SIGINT / SIGTERM (set per instance by the errors that say so).
- **141**: the program reading kiln's output closed it (``kiln runs ls | head``); the CLI stops
  quietly, as a program stopped by SIGPIPE would.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "CheckpointError",
    "CheckpointWriteError",
    "ConfigError",
    "DataError",
    "DistributedError",
    "ExportError",
    "InputError",
    "KilnError",
    "MetricNotFound",
    "MissingExtraError",
    "ModelError",
    "PathError",
    "RegistryError",
    "RunError",
    "ServeError",
    "SweepError",
    "TrackingError",
    "TrainingInterrupted",
    "TrialInterrupted",
    "UsageError",
    "exception_line",
    "require_extra",
]


class KilnError(Exception):
    """Base of every error caused by input a user controls: config, files, data, requests.

    >>> print(KilnError("unknown split 'tset'", field="--split", allowed=["train", "val", "test"]))
    unknown split 'tset'
      field: --split
      allowed: train, val, test
    """

    exit_code = 1

    def __init__(
        self,
        message: str = "",
        *,
        field: str | None = None,
        received: Any = None,
        allowed: str | Iterable[Any] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.received = received
        self.allowed = allowed if allowed is None or isinstance(allowed, str) else list(allowed)
        self.hint = hint

    def __str__(self) -> str:
        return self.format()

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without calling __init__: subclasses take other arguments than ``args`` holds
        # (TrainingInterrupted's exit code, TrialInterrupted's signal number), and an error that
        # crosses a process (a sweep worker, a rank) must arrive whole.
        return (_restore, (type(self), self.args, self.__dict__))

    def format(self) -> str:
        """The message, then one indented ``name: value`` line for each detail that was given."""
        lines = [self.message]
        if self.field is not None:
            lines.append(f"  field: {self.field}")
        if self.received is not None and repr(self.received) not in self.message:
            lines.append(f"  received: {self.received!r}")
        if self.allowed is not None:
            allowed = self.allowed if isinstance(self.allowed, str) else ", ".join(map(str, self.allowed))
            lines.append(f"  allowed: {allowed or '(none)'}")
        if self.hint is not None:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class ConfigError(KilnError):
    """The config (file, YAML, overrides or values) is invalid; the message lists every problem."""

    exit_code = 2


class UsageError(KilnError):
    """The command line itself is wrong (a missing argument, an unknown verb, a value out of range)."""

    exit_code = 2


class PathError(UsageError):
    """A path the user gave is not what is needed: missing, a file instead of a directory, or a
    directory that is not a run. Exit 2 like any usage error: the command needs another path."""


class DataError(KilnError):
    """A dataset cannot be found, read or split as configured."""


class ModelError(KilnError):
    """A model cannot be built or loaded from what the config or model package says."""


class CheckpointError(KilnError):
    """A checkpoint is missing, corrupt, unsafe or incompatible."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written: the disk is full, a quota is exceeded, the file system is
    read-only, permission is denied, or another OS error. Nothing committed was lost: the partial
    ``<name>.tmp`` was removed and the previous checkpoint is still the newest valid one. Exit 1.

    Its fields are what ``events.jsonl`` records of it (``record()``), for programs that retry.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path,
        errno_name: str,
        bytes_needed: int,
        bytes_free: int | None,
        previous: Path | None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path  # the checkpoint directory it tried to commit
        self.errno_name = errno_name  # "ENOSPC", "EDQUOT", "EROFS", "EACCES", ... ("" if none)
        self.bytes_needed = bytes_needed  # what the whole checkpoint takes on that file system
        self.bytes_free = bytes_free  # free there after the partial one was removed (None: not asked)
        self.previous = previous  # the newest committed checkpoint, where a resume starts

    def record(self) -> dict[str, Any]:
        """The facts as plain data: the ``checkpoint_failed`` record of events.jsonl."""
        return {
            "path": str(self.path), "errno": self.errno_name, "bytes_needed": self.bytes_needed,
            "bytes_free": self.bytes_free, "previous": None if self.previous is None else str(self.previous),
        }


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


class RunError(KilnError):
    """A record of a run directory (summary.json, environment.json, ...) is there but unreadable:
    not JSON, not an object, or not what kiln writes. Exit 1, like a corrupt checkpoint."""


class InputError(ServeError):
    """A request the model server refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MetricNotFound(ConfigError):
    """A sweep's metric is not one its runs produce: a mistake in the sweep file."""

    def __init__(self, metric: str, available: Sequence[str]) -> None:
        super().__init__(
            f"the sweep's metric {metric!r} is not produced by these runs; they have: "
            f"{', '.join(available)}. Set `metric:` in the sweep file to one of them."
        )
        self.metric = metric
        self.available = list(available)


class TrainingInterrupted(KilnError):
    """SIGINT or SIGTERM stopped the run after a checkpoint was written; exit code 130 or 143.

    Its fields say where the run stopped, for programs (a sweep records them; ``kiln.resume``
    takes ``run_dir``) without parsing the message.
    """

    def __init__(
        self,
        message: str,
        exit_code: int,
        *,
        run_dir: Path | None = None,
        checkpoint: Path | None = None,
        signal: str = "",
        global_step: int = 0,
        epoch: int | None = None,
        batch_in_epoch: int | None = None,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.run_dir = run_dir  # what ``kiln resume`` (or ``kiln.resume``) takes
        self.checkpoint = checkpoint  # None when checkpointing is off: nothing to resume from
        self.signal = signal  # "SIGINT" or "SIGTERM"
        self.global_step = global_step  # optimizer steps taken when the run stopped
        self.epoch = epoch  # the epoch it stopped in (1-based), when known
        self.batch_in_epoch = batch_in_epoch  # batches of that epoch done, when known


class TrialInterrupted(KilnError):
    """A signal stopped a sweep while a trial was being prepared (nothing to checkpoint yet)."""

    def __init__(self, signum: int) -> None:
        self.signal = _signal.Signals(signum).name
        super().__init__(f"{self.signal} received before the trial started")
        self.exit_code = 128 + signum


class MissingExtraError(KilnError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the optional package {module!r}, which is not installed. "
            f"Install it with: pip install 'kiln-ml[{extra}]'"
        )
        self.module = module
        self.extra = extra


def _restore(cls: type[KilnError], args: tuple[Any, ...], state: dict[str, Any]) -> KilnError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


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
