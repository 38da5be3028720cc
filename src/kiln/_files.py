"""Atomic file writes (temporary file, fsync, rename) and a file's sha256.

Every layer writes small JSON records (model.json, summary.json, eval metrics), so these live at
the bottom, importing nothing of kiln: a module low in the layers (``kiln.models.package``) may use
them without reaching up to ``kiln.runs``, which re-exports them for the run directory's files.
Reading is ``kiln.runs.layout.read_json``: a missing or corrupt record is an error naming the
file there (it needs kiln's errors), never a quiet ``{}``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise


def write_text(path: Path, text: str, *, concurrent: bool = False) -> None:
    """Write text atomically (temporary file, fsync, rename). ``concurrent``: other processes
    may write ``path`` at the same time (a cache shared by runs), so the temporary file is this
    writer's own; otherwise one ``<name>.tmp`` is used (and replaced by the next writer)."""
    import uuid

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp" if concurrent else path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read 1 MiB at a time (checkpoints, exports, models)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
