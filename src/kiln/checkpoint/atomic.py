"""Atomic directory commits: write into ``<name>.tmp/``, fsync every file, rename, fsync the parent.

The rename is the commit: a reader sees either no checkpoint or a complete one, never half of one,
whatever moment the process is killed at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (directories make renames and creations durable)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_path(final: Path) -> Path:
    """``<final>.tmp``: where ``final`` is written before its rename commits it."""
    return final.with_name(final.name + TMP_SUFFIX)


def begin(final: Path) -> Path:
    """A fresh, empty ``<final>.tmp/`` directory to write a checkpoint into."""
    tmp = tmp_path(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, final: Path) -> None:
    """fsync everything in ``tmp``, rename it to ``final`` and fsync the parent directory."""
    for child in tmp.iterdir():
        fsync_path(child)
    fsync_path(tmp)
    if final.exists():  # an older save of the same position: set aside, never a moment without one
        aside = final.with_name(final.name + ".old" + TMP_SUFFIX)  # cleaned as a leftover if killed here
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(final, aside)
        os.rename(tmp, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(tmp, final)
    fsync_path(final.parent)


def abort(tmp: Path) -> None:
    """Remove a half-written ``tmp`` directory; the committed checkpoints stay as they were."""
    shutil.rmtree(tmp, ignore_errors=True)


def clean_leftovers(directory: Path) -> list[Path]:
    """Delete ``*.tmp`` directories left by a process killed mid-save; returns what was removed."""
    removed = []
    if directory.is_dir():
        for child in directory.iterdir():
            if child.name.endswith(TMP_SUFFIX) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed
