"""Downloads for the built-in datasets: a partial file never takes the final name, so an
interrupted download never leaves a file that looks valid."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress


def fetch(url: str, dest: Path, md5: str | None = None, progress: Progress | None = None) -> None:
    """Download ``url`` to ``dest`` via a ``.part`` file, moved into place once complete (and once
    its MD5 matches, when ``md5`` is given). Raises OSError, http.client.HTTPException or ValueError."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)  # published checksums are MD5; integrity only
    task = progress.add_task(dest.name, total=None) if progress is not None else None
    try:
        with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:
            size = response.headers.get("Content-Length")
            if progress is not None and task is not None:
                progress.update(task, total=int(size) if size else None)
            while chunk := response.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                if progress is not None and task is not None:
                    progress.advance(task, len(chunk))
        if md5 is not None and digest.hexdigest() != md5:
            raise ValueError(f"MD5 {digest.hexdigest()} does not match the published {md5}")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
