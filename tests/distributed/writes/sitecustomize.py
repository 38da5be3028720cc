"""Loaded by every Python process of a test job (PYTHONPATH): records, per torchrun rank, each
file or directory the process creates, writes, renames or deletes under KILN_WATCH_DIR, into
KILN_WRITES_DIR/rank<RANK>-<pid>.txt. An audit hook sees every such call, whoever makes it."""

import os
import sys

_WATCH = os.environ.get("KILN_WATCH_DIR")
_OUT = os.environ.get("KILN_WRITES_DIR")
_RANK = os.environ.get("RANK")

if _WATCH and _OUT and _RANK is not None:
    _watch = os.path.realpath(_WATCH)
    _log = os.path.join(_OUT, f"rank{_RANK}-{os.getpid()}.txt")
    _busy = False

    def _under(path: object) -> bool:
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if not isinstance(path, (str, os.PathLike)):
            return False
        return os.path.realpath(os.fspath(path)).startswith(_watch)

    def _hook(event: str, args: tuple) -> None:
        global _busy
        if _busy:
            return
        write = False
        if event == "open" and args and _under(args[0]):
            mode, flags = args[1], args[2]
            write = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            )
        elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate") and args:
            write = _under(args[0])
        if write:
            _busy = True
            try:
                with open(_log, "a", encoding="utf-8") as f:
                    f.write(f"{event} {args[0]}\n")
            finally:
                _busy = False

    sys.addaudithook(_hook)
