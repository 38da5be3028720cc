"""The small record beside a job's output that makes it resumable: ``OUTPUT.progress.json``.

It says which input, model and options the partial output belongs to, how many chunks are in it
and where the committed bytes end. It is replaced atomically after each chunk's bytes are synced,
so after any kill it describes a committed prefix: the resume truncates whatever came after that
prefix and goes on with the next chunk. A changed input (its size, mtime, or the hash of its first
or last MiB; a folder's listing) or model (the hash of the file it runs) is refused, since the
output would mix two jobs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from kiln.errors import UsageError

VERSION = 1
EDGE_BYTES = 1 << 20  # the "first and last chunk" of a file hashed to notice a change


def progress_path(output: Path) -> Path:
    return output.with_name(output.name + ".progress.json")


def read_progress(output: Path) -> dict[str, Any] | None:
    path = progress_path(output)
    if not path.is_file():
        return None
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is damaged ({exc}); run again with --overwrite to start over") from None
    if record.get("version") != VERSION:
        raise UsageError(f"{path} was written by another kiln version; run again with --overwrite")
    return record


def write_progress(output: Path, record: dict[str, Any]) -> None:
    """Replace the record atomically (write, fsync, rename), so a kill leaves the old or the new."""
    path = progress_path(output)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as handle:
        json.dump({"version": VERSION, **record}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def input_fingerprint(path: Path, listing: list[str] | None = None) -> dict[str, Any]:
    """What identifies an input: a file's size, mtime and edge hashes; a folder's listing."""
    if listing is not None:
        digest = hashlib.sha256()
        for name in listing:
            stat = (path / name).stat()
            digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        return {"path": str(path.resolve()), "files": len(listing), "listing": digest.hexdigest()}
    stat = path.stat()
    with open(path, "rb") as handle:
        head = hashlib.sha256(handle.read(EDGE_BYTES)).hexdigest()
        handle.seek(max(0, stat.st_size - EDGE_BYTES))
        tail = hashlib.sha256(handle.read(EDGE_BYTES)).hexdigest()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "head": head, "tail": tail}


def file_hash(paths: list[Path]) -> str:
    """One sha256 for the files a model runs from (its export, or its weights and model.json)."""
    from kiln._files import sha256_file

    return hashlib.sha256("".join(sha256_file(p) for p in paths).encode()).hexdigest()


def refuse_mismatch(output: Path, record: dict[str, Any], job: dict[str, Any]) -> None:
    """UsageError (exit 2) when the partial output belongs to another input, model or options."""
    for key, what in (("input", "the input"), ("model", "the model"), ("options", "the options")):
        if record.get(key) != job[key]:
            changed = _difference(record.get(key), job[key])
            raise UsageError(
                f"{output} is a partial output of another job: {what} changed since it was started "
                f"({changed}). Run again with --overwrite to start over, or give the same {what[4:]} "
                "to finish the first job")


def _difference(before: Any, now: Any) -> str:
    if isinstance(before, dict) and isinstance(now, dict):
        keys = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
        return ", ".join(f"{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in keys[:3])
    return f"{str(before)[:16]}... then, {str(now)[:16]}... now"
