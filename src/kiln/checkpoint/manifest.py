"""``manifest.json``: format version and the sha256 and size of every file of a checkpoint.

Written last, so its presence and agreement with the files is what makes a checkpoint valid.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kiln._files import sha256_file
from kiln.errors import CheckpointError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def write_manifest(directory: Path, extra: dict[str, Any]) -> None:
    """Hash every file in ``directory`` into its manifest.json."""
    files = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    (directory / MANIFEST).write_text(_render(files, extra), encoding="utf-8")


def manifest_bytes(contents: Mapping[str, bytes], extra: dict[str, Any]) -> bytes:
    """The manifest.json of files about to be written, from their bytes in memory (what
    ``write_manifest`` would write once they are on disk)."""
    files = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for name, data in sorted(contents.items())
        if name != MANIFEST
    }
    return _render(files, extra).encode("utf-8")


def _render(files: dict[str, dict[str, Any]], extra: dict[str, Any]) -> str:
    return json.dumps({"format_version": FORMAT_VERSION, **extra, "files": files}, indent=2)


def verify(directory: Path) -> dict[str, Any]:
    """Check a checkpoint against its manifest; raise CheckpointError naming the first bad file."""
    path = directory / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{directory.name}: manifest.json is missing, so it cannot be verified")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        version = int(manifest["format_version"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{directory.name}: manifest.json is unreadable ({exc})") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{directory.name}: format version {version} is newer than this kiln reads "
            f"({FORMAT_VERSION}); upgrade kiln"
        )
    for name, expected in files.items():
        file = directory / name
        if not file.is_file():
            raise CheckpointError(f"{directory.name}: {name} is missing")
        size = file.stat().st_size
        if size != expected["bytes"]:
            raise CheckpointError(
                f"{directory.name}: {name} has {size} bytes, the manifest says {expected['bytes']} "
                "(truncated or overwritten)"
            )
        if sha256_file(file) != expected["sha256"]:
            raise CheckpointError(f"{directory.name}: {name} fails its sha256 check (corrupted)")
    return manifest
