"""An existing run directory, checked once, and the typed records read from it.

``RunDir.open(path)`` is the one answer to "is this a run directory?" for every verb and library
call: it says what is wrong in one PathError (exit 2) naming the path and what is missing, with a
hint. A directory is a run when it holds ``config.yaml``, which the Trainer writes into it first.

>>> run = RunDir.open("runs/digits_mlp_20261123_101500")  # doctest: +SKIP
>>> run.read_config().training.epochs, run.read_summary().status  # doctest: +SKIP
(20, 'stopped_early')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.errors import PathError, RunError
from kiln.runs.layout import RunPaths
from kiln.runs.summary import RunSummary

if TYPE_CHECKING:
    from kiln.config.schema import KilnConfig

MARKER = "config.yaml"  # written first into every run directory: what makes a directory a run
HINT = "pass a run directory (runs/<name>_<time>/); `kiln runs` lists them"


@dataclass(frozen=True)
class RunDir(RunPaths):
    """A directory known to be a run: its paths (``run.summary`` is summary.json's path, see
    RunPaths) and its records, read typed (``run.read_summary()``)."""

    @classmethod
    def open(cls, path: str | Path, needs: Sequence[str] = (), up: int = 0) -> RunDir:
        """The run ``path`` names, or PathError saying why it is none: it does not exist, it is a
        file, it has no config.yaml, or it lacks one of ``needs`` (paths inside a run, such as
        ``checkpoints`` or ``logs/events.jsonl``). With ``up`` > 0, a path that many levels inside
        a run (a checkpoint, ``checkpoints/``) names that run."""
        p = Path(path)
        if not p.exists():
            raise PathError(f"{p} is not a run directory: it does not exist", hint=HINT)
        if not p.is_dir():
            raise PathError(f"{p} is not a run directory: it is a file", hint=HINT)
        root = next((c for c in (p, *p.parents[:up]) if cls.is_run(c)), None)
        if root is None:
            missing = " or ".join([MARKER, *(n for n in needs if not (p / n).exists())])
            inside = f" (nor has any of the {up} directories above it)" if up else ""
            raise PathError(f"{p} is not a run directory: it has no {missing}{inside}", hint=HINT)
        lacking = [n for n in needs if not (root / n).exists()]
        if lacking:
            raise PathError(f"{root} is a run directory but has no {' or '.join(lacking)}",
                            hint=_NEEDS_HINTS.get(lacking[0], HINT))
        return cls(root)

    @staticmethod
    def is_run(path: Path) -> bool:
        """Whether ``path`` is a run directory (holds config.yaml); nothing is raised."""
        return (path / MARKER).is_file()

    def read_config(self, overrides: Sequence[str] = ()) -> KilnConfig:
        """The run's config.yaml, validated, with ``overrides`` applied."""
        from kiln.config.loader import load_config

        return load_config(self.config, overrides)

    def read_summary(self) -> RunSummary:
        """summary.json; PathError when the run has not finished (it is written at the end)."""
        if not self.summary.is_file():
            raise PathError(f"{self.root} has no summary.json: the run has not finished",
                            hint=f"resume it with `kiln resume {self.root}`, or pass a run that finished")
        return RunSummary.read(self.summary)

    def read_summary_if_any(self) -> RunSummary | None:
        """summary.json, or None while the run trains or after it was killed without one; a file
        that is there but is no summary is a RunError, never None."""
        return RunSummary.read(self.summary) if self.summary.is_file() else None


_NEEDS_HINTS = {
    "checkpoints": "checkpoints are written every epoch unless checkpoint.enabled=false; "
                   "start a new run with `kiln train`",
    "logs/events.jsonl": "events.jsonl is written from a run's first moment; this run's logs/ was emptied",
}


@dataclass(frozen=True)
class RunInfo:
    """One row of ``kiln runs``: a run and its summary, or why there is none."""

    path: Path
    summary: RunSummary | None  # None: still going, killed, or unreadable (see ``state``)
    state: str  # the summary's status, "running or killed", or "unreadable summary.json"

    @property
    def name(self) -> str:
        return self.path.name


def read_summary(run_dir: str | Path) -> RunSummary:
    """The summary of the run ``run_dir``; PathError when it is no run or has not finished."""
    return RunDir.open(run_dir).read_summary()


def list_runs(output_dir: Path) -> list[RunInfo]:
    """Runs under ``output_dir``, newest first; one still going (no summary yet) shows as such,
    and one whose summary.json is damaged is listed as unreadable rather than stopping the list."""
    if not output_dir.is_dir():
        return []
    runs = []
    for child in output_dir.iterdir():
        if not child.is_dir() or not RunDir.is_run(child):
            continue
        try:
            summary = RunDir(child).read_summary_if_any()
        except RunError:
            runs.append(RunInfo(child, None, "unreadable summary.json"))
            continue
        runs.append(RunInfo(child, summary, summary.status if summary else "running or killed"))
    return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)
