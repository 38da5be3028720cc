"""What a checkpoint that could not be written tells its user: why (the OS error), how much room it
needs, what is still intact, and how to get going again.

A full disk must be a clear stop, not a corrupt run: by the time this error is raised the partial
``<name>.tmp`` is gone and the newest committed checkpoint is untouched, so the message can say
exactly where a resume starts.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from kiln.errors import CheckpointWriteError

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # the errors that more room fixes: say how much


def disk_bytes(sizes: Iterable[int], directory: Path) -> int:
    """The room files of ``sizes`` bytes take in ``directory``: each rounded up to the file
    system's block, plus one block for their directory."""
    try:
        block = os.statvfs(directory).f_frsize or 4096
    except OSError:
        block = 4096
    return block + sum(-(-size // block) * block for size in sizes)


def write_error(
    exc: OSError, final: Path, needed: int, previous: Path | None, keep_last_n: int, keep_best_n: int
) -> CheckpointWriteError:
    """The error for ``exc``, raised while writing checkpoint ``final`` (its ``.tmp`` already
    removed): ``needed`` bytes on disk, ``previous`` the newest committed checkpoint."""
    code = exc.errno or 0
    name = errno.errorcode.get(code, "")
    reason = _REASONS.get(code) or exc.strerror or str(exc)
    free = _free_bytes(final.parent) if code in _NO_ROOM else None
    needs = f"about {size_text(needed)} on that disk"
    if free is not None:
        needs += f"; {size_text(free)} {'is' if free == 1 else 'are'} free there now"
    intact = (
        f"{previous.name} (the newest checkpoint: a resume starts there)" if previous is not None
        else "no checkpoint was committed before this one: a resume starts the run from its beginning"
    )
    message = (
        f"could not write checkpoint {final.name} in {final.parent}: {reason}{f' ({name})' if name else ''}\n"
        f"  needs: {needs}\n"
        f"  intact: {intact}; the partial {final.name}.tmp was removed"
    )
    return CheckpointWriteError(
        message, path=final, errno_name=name, bytes_needed=needed, bytes_free=free, previous=previous,
        hint=_fix(code, final.parent, needed, free, keep_last_n, keep_best_n),
    )


def _fix(code: int, directory: Path, needed: int, free: int | None, keep_last_n: int, keep_best_n: int) -> str:
    move = "move the run directory (or only its checkpoints/ folder, leaving a symlink in its place) to a disk"
    if code in _NO_ROOM:
        short = max(needed - (free or 0), 1)
        room = "of your quota (or have it raised)" if code == errno.EDQUOT else "on that disk"
        fix = f"free at least {size_text(short)} {room}, or {move} with room"
        if keep_last_n > 1 or keep_best_n > 1:
            fix += (f", or keep fewer checkpoints (checkpoint.keep_last_n is {keep_last_n}, "
                    f"checkpoint.keep_best_n is {keep_best_n}; 1 keeps one of each)")
        return fix
    if code == errno.EROFS:
        return f"remount that file system read-write, or {move} that is writable"
    if code in (errno.EACCES, errno.EPERM):
        return f"make {directory} writable for this user, or {move} where it is"
    return "fix the cause above; nothing committed was touched"


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def size_text(n: int) -> str:
    """``512 bytes``, ``484 kB``, ``12.3 MB``, ``1.25 GB`` (decimal units, as ``df -H``)."""
    if n < 1000:
        return f"{n} byte{'' if n == 1 else 's'}"
    if n < 1_000_000:
        return f"{n / 1e3:.0f} kB"
    if n < 1_000_000_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.2f} GB"
